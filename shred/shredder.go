package shred

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/sqltext"
	"github.com/strata-go/strata/schema"
)

// MaxSubjectLength is the longest subject ID, in bytes.
const MaxSubjectLength = 256

// Config configures a Shredder. The zero value (or nil) means every
// default.
type Config struct {
	// Schema is the Postgres schema holding the key table (migration
	// 0050). Default "strata".
	Schema string
	// Registry tells which fields of which events are personal and which
	// field names the subject. Default nil: nothing is sealed (a Shredder
	// without one still opens and forgets; the CLI uses one so).
	Registry *schema.Registry
	// Wrapper protects the data keys at rest (a KMS). Default nil: keys
	// are stored as they are in the key table.
	Wrapper Wrapper
}

// Shredder seals the personal fields of events on append, opens them on
// read and forgets data subjects. It is an eventstore.Sealer and an
// eventstore.Opener: pass it as both in eventstore.Config. It is safe for
// concurrent use.
type Shredder struct {
	pool    *pgxpool.Pool
	reg     *schema.Registry
	wrapper Wrapper
	sql     struct{ record, create, keys, locked, forget, snapshots, deadLetters, forgotten string }
}

var (
	_ eventstore.Sealer = (*Shredder)(nil)
	_ eventstore.Opener = (*Shredder)(nil)
)

// New returns a Shredder on pool.
func New(pool *pgxpool.Pool, cfg *Config) *Shredder {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Schema == "" {
		c.Schema = "strata"
	}
	if c.Wrapper == nil {
		c.Wrapper = plain{}
	}
	s := &Shredder{pool: pool, reg: c.Registry, wrapper: c.Wrapper}
	r := sqltext.Expander(c.Schema)
	s.sql.record, s.sql.create, s.sql.keys = r.Replace(recordSQL), r.Replace(createSQL), r.Replace(keysSQL)
	s.sql.locked, s.sql.forget = r.Replace(lockedKeysSQL), r.Replace(forgetSQL)
	s.sql.snapshots, s.sql.forgotten = r.Replace(forgetSnapshotsSQL), r.Replace(forgottenSQL)
	s.sql.deadLetters = r.Replace(forgetDeadLettersSQL)
	return s
}

// Seal encrypts the personal fields of events (see schema.Personal) under
// their subjects' keys, creating a key for a subject seen for the first
// time. It is what makes a Shredder an eventstore.Sealer; the store calls
// it after validating the events, with q the append's transaction or
// pool (keys are looked up and made on it). Events of types without
// personal fields (or unknown to the registry) are left as they are.
//
// Errors, each matching eventstore.ErrInvalidEvent, nothing written:
// ErrNoSubject (the subject field is missing, empty, too long or not a
// string), ErrForgotten (the subject was forgotten), ErrPersonalMetadata
// (see checkMetadata), ErrReserved (a value that looks sealed).
func (s *Shredder) Seal(ctx context.Context, q eventstore.Querier, streamID string, events []eventstore.NewEvent) ([][]byte, error) {
	out := make([][]byte, len(events))
	type todo struct {
		i       int
		subject string
		fields  []span
	}
	var work []todo
	var subjects []string
	for i, ev := range events {
		out[i] = ev.Data
		if s.reg == nil {
			continue
		}
		// A value that looks sealed in an event of a registered type is
		// not the sealer's: written in, it would make every read of the
		// event fail (ErrTampered). Events of other types (Pub/Sub's
		// copies of sealed events) pass.
		if bytes.Contains(ev.Data, prefixJSON) && !errors.Is(s.reg.Validate(ev), schema.ErrUnknownType) {
			return nil, invalid{fmt.Errorf("event %d (%s): %w", i, ev.Type, ErrReserved)}
		}
		p, ok := s.reg.Personal(ev.Type, ev.SchemaVersion)
		if !ok {
			// A version of a registered type that the registry does not
			// know: which fields are personal is unknown, and stored
			// as it is they would be in clear (with no Validator, nothing
			// else refuses it).
			if err := s.reg.Validate(ev); errors.Is(err, schema.ErrUnknownVersion) {
				return nil, invalid{fmt.Errorf("event %d (%s): %w", i, ev.Type, err)}
			}
			continue
		}
		subject, fields, err := findFields(ev.Data, p)
		if err != nil {
			return nil, invalid{fmt.Errorf("event %d (%s): %w", i, ev.Type, err)}
		}
		if err := checkMetadata(ev, p, fields); err != nil {
			return nil, invalid{fmt.Errorf("event %d (%s): %w", i, ev.Type, err)}
		}
		if len(fields) == 0 {
			continue
		}
		work = append(work, todo{i, subject, fields})
		if !slices.Contains(subjects, subject) {
			subjects = append(subjects, subject)
		}
	}
	if len(work) == 0 {
		return out, nil
	}
	keys, err := s.sealKeys(ctx, q, streamID, subjects)
	if err != nil {
		return nil, err
	}
	for _, w := range work {
		ev := events[w.i]
		k := keys[w.subject]
		sp := make([]splice, 0, len(w.fields))
		for _, f := range w.fields {
			h := header{kind: kindOther, version: k.version, event: ev.ID, subject: w.subject}
			if ev.Data[f.start] == '"' {
				h.kind = kindString
			}
			with, err := sealValue(k.aead, h, f.ptr, ev.Data[f.start:f.end])
			if err != nil {
				return nil, fmt.Errorf("shred: seal %s of event %d: %w", f.ptr, w.i, err)
			}
			sp = append(sp, splice{f.start, f.end, with})
		}
		out[w.i] = apply(ev.Data, sp)
	}
	return out, nil
}

// span is a personal value found in a payload.
type span struct {
	ptr        string
	start, end int
}

// findFields returns the subject and the personal values of data. A
// property spelt as a personal field in another case ("EMAIL" for
// "/email") is personal too: Go's JSON decoding matches it to the field.
// A personal string equal to schema.Erased is ErrReserved: it would read
// as erased while its subject's key exists.
func findFields(data []byte, p schema.Personal) (subject string, fields []span, err error) {
	var subj []byte
	personal := func(ptr string) bool {
		return slices.ContainsFunc(p.Fields, func(f string) bool { return strings.EqualFold(f, ptr) })
	}
	err = walk(data,
		func(ptr string, _ byte) bool { return ptr == p.Subject || personal(ptr) },
		func(ptr string, start, end int) error {
			if ptr == p.Subject {
				subj = data[start:end]
				return nil
			}
			switch string(data[start:end]) {
			case "null": // an absent value has nothing to seal
			case `"` + schema.Erased + `"`:
				return fmt.Errorf("%w: %s is the erased value %q", ErrReserved, ptr, schema.Erased)
			default:
				fields = append(fields, span{ptr, start, end})
			}
			return nil
		})
	if err != nil {
		return "", nil, err
	}
	if len(fields) == 0 {
		return "", nil, nil // optional personal fields, all absent: nothing to seal, no subject needed
	}
	if subj == nil || subj[0] != '"' || json.Unmarshal(subj, &subject) != nil || subject == "" {
		return "", nil, fmt.Errorf("%w: the subject field %s is missing, empty or not a string", ErrNoSubject, p.Subject)
	}
	if len(subject) > MaxSubjectLength || !utf8.ValidString(subject) || strings.IndexByte(subject, 0) >= 0 {
		return "", nil, fmt.Errorf("%w: subject %.40q…: want at most %d bytes of UTF-8 without NUL", ErrNoSubject, subject, MaxSubjectLength)
	}
	return subject, fields, nil
}

// checkMetadata refuses metadata that carries personal data unnoticed:
// a key named as a personal field (its last pointer token, "email" for
// "/email"), or a value (or correlation or causation ID) holding one of
// the event's personal string values, in any case: equal to it, or, for a
// value of at least minQuoted bytes, containing it. Metadata is stored in
// clear and copied to every broker message, so it must not hold what
// Forget is to erase.
func checkMetadata(ev eventstore.NewEvent, p schema.Personal, fields []span) error {
	md := ev.Metadata
	if len(md.Values) == 0 && md.CorrelationID == "" && md.CausationID == "" {
		return nil
	}
	for _, f := range p.Fields {
		name := f[strings.LastIndexByte(f, '/')+1:]
		for k := range md.Values {
			if strings.EqualFold(k, name) {
				return fmt.Errorf("%w: metadata key %q is the personal field %s", ErrPersonalMetadata, k, f)
			}
		}
	}
	for _, f := range fields {
		var v string
		if ev.Data[f.start] != '"' || json.Unmarshal(ev.Data[f.start:f.end], &v) != nil || v == "" {
			continue
		}
		if holds(md.CorrelationID, v) || holds(md.CausationID, v) {
			return fmt.Errorf("%w: the correlation or causation ID holds the value of %s", ErrPersonalMetadata, f.ptr)
		}
		for k, mv := range md.Values {
			if holds(mv, v) {
				return fmt.Errorf("%w: metadata %q holds the value of %s", ErrPersonalMetadata, k, f.ptr)
			}
		}
	}
	return nil
}

// minQuoted is the shortest personal value that checkMetadata looks for
// inside a metadata value (a shorter one, an initial say, would be found
// in most texts); shorter ones are refused only as the whole value.
const minQuoted = 4

// holds reports whether the metadata text md holds the personal value v.
func holds(md, v string) bool {
	if len(v) < minQuoted {
		return strings.EqualFold(md, v)
	}
	return strings.Contains(strings.ToLower(md), strings.ToLower(v))
}

// prefixJSON is how a sealed value begins in a payload.
var prefixJSON = []byte(`"` + Prefix)

// Open returns copies of events with every sealed value in their data
// replaced by its plaintext, or, when its subject is forgotten, by the
// erased value: the JSON string schema.Erased for a string, null for any
// other value. Nothing else of an event changes, byte for byte. It is what
// makes a Shredder an eventstore.Opener. A value opens only in the event
// it was sealed for or in a copy of it, an event whose causation ID is
// that event (a Pub/Sub copy the relay published); elsewhere it is
// ErrTampered, as is a value that does not authenticate. A value whose
// subject has no row in the key table is ErrUnknownKey.
//
// With lock, q must be a transaction: the subjects' key rows stay share
// locked until it ends (see eventstore.Opener).
func (s *Shredder) Open(ctx context.Context, q eventstore.Querier, events []eventstore.Event, lock bool) ([]eventstore.Event, error) {
	type found struct {
		i   int
		ptr string
		at  span
		v   sealed
	}
	var work []found
	var subjects []string
	for i, e := range events {
		if !bytes.Contains(e.Data, prefixJSON) {
			continue
		}
		err := walk(e.Data,
			func(_ string, first byte) bool { return first == '"' },
			func(ptr string, start, end int) error {
				if !bytes.HasPrefix(e.Data[start:end], prefixJSON) {
					return nil
				}
				v, err := parseSealed(string(e.Data[start+len(prefixJSON) : end-1]))
				if err != nil {
					return fmt.Errorf("%s: %w", ptr, err)
				}
				if v.event != e.ID && e.Metadata.CausationID != v.event.String() {
					return fmt.Errorf("%w: %s was sealed for event %s", ErrTampered, ptr, v.event)
				}
				work = append(work, found{i, ptr, span{ptr, start, end}, v})
				if !slices.Contains(subjects, v.subject) {
					subjects = append(subjects, v.subject)
				}
				return nil
			})
		if err != nil {
			return nil, fmt.Errorf("shred: open event %s: %w", e.ID, err)
		}
	}
	if len(work) == 0 {
		return events, nil
	}
	sql := s.sql.keys
	if lock {
		sql = s.sql.locked
	}
	rows, err := readKeys(ctx, q, sql, subjects)
	if err != nil {
		return nil, fmt.Errorf("shred: open: keys: %w", err)
	}
	keys := make(map[string]cipher.AEAD, len(rows))
	out := slices.Clone(events)
	var sp []splice
	for j, w := range work {
		r, ok := rows[w.v.subject]
		if !ok || r.wrapped != nil && uint32(r.version) != w.v.version {
			return nil, fmt.Errorf("shred: open event %s: %w: subject %q version %d", events[w.i].ID, ErrUnknownKey, w.v.subject, w.v.version)
		}
		var with []byte
		switch {
		case r.wrapped == nil && w.v.kind == kindString:
			with = []byte(`"` + schema.Erased + `"`)
		case r.wrapped == nil:
			with = []byte("null")
		default:
			aead, ok := keys[w.v.subject]
			if !ok {
				key, err := s.wrapper.Unwrap(ctx, w.v.subject, r.wrapped)
				if err != nil {
					return nil, fmt.Errorf("shred: unwrap key of %q: %w", w.v.subject, err)
				}
				if aead, err = newAEAD(key); err != nil {
					return nil, fmt.Errorf("shred: open event %s: key of %q: %w", events[w.i].ID, w.v.subject, err)
				}
				keys[w.v.subject] = aead
			}
			if with, err = w.v.open(aead, w.ptr); err != nil {
				return nil, fmt.Errorf("shred: open event %s: %w", events[w.i].ID, err)
			}
		}
		sp = append(sp, splice{w.at.start, w.at.end, with})
		if j == len(work)-1 || work[j+1].i != w.i {
			out[w.i].Data = apply(events[w.i].Data, sp)
			sp = nil
		}
	}
	return out, nil
}

// ErasedError replaces the error text of the dead letters of a forgotten
// subject's streams: a handler's error may have quoted a personal value.
const ErasedError = "[erased: the data subject was forgotten]"

// Forget deletes the subject's key, so that every sealed value of the
// subject reads back erased from then on, wherever it was copied, deletes
// the snapshots of the streams its data was appended to and replaces the
// error text of their dead letters with ErasedError. A
// subject never seen is recorded as forgotten too. Forgetting twice is a
// no-op. A subscription batch that is opening the subject's values when
// Forget runs finishes first (Forget waits for its lock); the next one
// sees the erased values.
//
// Read models hold what their projections wrote from plaintext: forget
// there in the same transaction with ForgetTx (projection.Runner.Forget
// does, calling every projection's Forget), or rebuild them.
func (s *Shredder) Forget(ctx context.Context, subject string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return s.ForgetTx(ctx, tx, subject) })
}

// ForgetTx is Forget inside the caller's transaction: the key is gone for
// others once tx commits.
func (s *Shredder) ForgetTx(ctx context.Context, tx pgx.Tx, subject string) error {
	if subject == "" || len(subject) > MaxSubjectLength || !utf8.ValidString(subject) || strings.IndexByte(subject, 0) >= 0 {
		return fmt.Errorf("shred: forget %.40q: %w: want 1 to %d bytes of UTF-8 without NUL", subject, eventstore.ErrInvalidArgument, MaxSubjectLength)
	}
	if _, err := tx.Exec(ctx, s.sql.forget, subject); err != nil {
		return fmt.Errorf("shred: forget %q: %w", subject, err)
	}
	if _, err := tx.Exec(ctx, s.sql.snapshots, subject); err != nil {
		return fmt.Errorf("shred: forget %q: snapshots: %w", subject, err)
	}
	if _, err := tx.Exec(ctx, s.sql.deadLetters, subject, ErasedError); err != nil {
		return fmt.Errorf("shred: forget %q: dead letters: %w", subject, err)
	}
	return nil
}

// Forgotten lists the forgotten subjects.
func (s *Shredder) Forgotten(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, s.sql.forgotten)
	if err != nil {
		return nil, fmt.Errorf("shred: forgotten: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("shred: forgotten: %w", err)
	}
	return out, nil
}
