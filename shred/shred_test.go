package shred_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
	"github.com/strata-go/strata/shred"
)

// Personal fields are ciphertext in the table from the first write, read
// back as plaintext, and erased for the forgotten subject only; nothing
// else of the event changes.
func TestSealOpenForget(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	ada := Signup{Customer: "c-ada", Email: "ada@example.com", Age: 36, Address: &Address{Street: "12 Byron Lane", City: "London"}, Plan: "pro"}
	bob := Signup{Customer: "c-bob", Email: "bob@example.com", Age: 41, Plan: "free"}
	f.append(t, "account-ada", ada, Note{Text: "hello"})
	f.append(t, "account-bob", bob)
	secrets := []string{"ada@example.com", "12 Byron Lane", "bob@example.com"}
	if hits := scanSchema(t, f.db.Pool, f.db.Schema, secrets); len(hits) > 0 {
		t.Fatalf("plaintext stored:\n%s", strings.Join(hits, "\n"))
	}

	evs := f.read(t, "account-ada")
	got, err := schema.DecodeAs[Signup](f.reg, evs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.Email != ada.Email || got.Age != 36 || got.Address.Street != "12 Byron Lane" || got.Address.City != "London" {
		t.Fatalf("read back %+v", got)
	}
	before := evs[0].Data

	// Snapshots are state folded from plaintext: forgetting deletes those
	// of the subject's streams, and only those.
	for _, stream := range []string{"account-ada", "account-bob"} {
		if err := f.store.SaveSnapshot(ctx, eventstore.Snapshot{StreamID: stream, Version: 1, Data: []byte(`{"email":"` + stream + `@snap"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.sh.Forget(ctx, "c-ada"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.LoadSnapshot(ctx, "account-ada"); !errors.Is(err, eventstore.ErrSnapshotNotFound) {
		t.Fatalf("ada's snapshot after forget: %v", err)
	}
	if _, err := f.store.LoadSnapshot(ctx, "account-bob"); err != nil {
		t.Fatalf("bob's snapshot after ada's forget: %v", err)
	}
	evs = f.read(t, "account-ada")
	got, err = schema.DecodeAs[Signup](f.reg, evs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !schema.IsErased(got.Email) || got.Age != 0 || !schema.IsErased(got.Address.Street) || got.Address.City != "London" || got.Plan != "pro" || got.Customer != "c-ada" {
		t.Fatalf("after forget: %+v", got)
	}
	erased := strings.NewReplacer(`"ada@example.com"`, `"`+schema.Erased+`"`, `36`, `null`, `"12 Byron Lane"`, `"`+schema.Erased+`"`).Replace(string(before))
	if string(evs[0].Data) != erased {
		t.Fatalf("after forget the data is\n%s\nwant\n%s", evs[0].Data, erased)
	}
	if string(evs[1].Data) != `{"text":"hello"}` {
		t.Fatalf("an event without personal fields changed: %s", evs[1].Data)
	}
	// The other subject reads back intact.
	b, err := schema.DecodeAs[Signup](f.reg, f.read(t, "account-bob")[0])
	if err != nil || b != bob {
		t.Fatalf("bob: %+v, %v", b, err)
	}
	// The store's other reads open too (ReadCorrelated: it has no
	// horizon to wait for).
	if _, err := f.store.Append(ctx, "account-ada", eventstore.Any, eventstore.NewEvent{Type: "Note", Data: []byte(`{}`),
		Metadata: eventstore.Metadata{CorrelationID: "corr-1"}}); err != nil {
		t.Fatal(err)
	}
	ne, _ := f.reg.Encode(Signup{Customer: "c-cy", Email: "cy@example.com", Plan: "x"})
	ne.Metadata.CorrelationID = "corr-1"
	if _, err := f.store.Append(ctx, "account-cy", eventstore.Any, ne); err != nil {
		t.Fatal(err)
	}
	corr, err := f.store.ReadCorrelated(ctx, "corr-1", 10)
	if err != nil || len(corr) != 2 || !bytes.Contains(corr[1].Data, []byte(`"cy@example.com"`)) {
		t.Fatalf("ReadCorrelated: %v %v", corr, err)
	}
	forgotten, err := f.sh.Forgotten(ctx)
	if err != nil || len(forgotten) != 1 || forgotten[0] != "c-ada" {
		t.Fatalf("forgotten %v %v", forgotten, err)
	}
}

// Bad input: a typed error, nothing written.
func TestSealRefuses(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, "account-gone", Signup{Customer: "c-gone", Email: "gone@example.com", Plan: "pro"})
	if err := f.sh.Forget(ctx, "c-gone"); err != nil {
		t.Fatal(err)
	}
	if err := f.sh.Forget(ctx, "c-never-seen"); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", shred.MaxSubjectLength+1)
	cases := []struct {
		name string
		ev   eventstore.NewEvent
		want error
	}{
		{"empty subject", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"a@example.com","plan":"x","customer":""}`)}, shred.ErrNoSubject},
		{"no subject", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"a@example.com","plan":"x"}`)}, shred.ErrNoSubject},
		{"subject not a string", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"a@example.com","plan":"x","customer":7}`)}, eventstore.ErrInvalidEvent},
		{"subject too long", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"a@example.com","plan":"x","customer":"` + long + `"}`)}, shred.ErrNoSubject},
		{"forgotten subject", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"g@example.com","plan":"x","customer":"c-gone"}`)}, shred.ErrForgotten},
		{"forgotten before first seen", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"n@example.com","plan":"x","customer":"c-never-seen"}`)}, shred.ErrForgotten},
		{"metadata value", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"m@example.com","plan":"x","customer":"c-m"}`),
			Metadata: eventstore.Metadata{Values: map[string]string{"to": "m@example.com"}}}, shred.ErrPersonalMetadata},
		{"metadata key", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"m@example.com","plan":"x","customer":"c-m"}`),
			Metadata: eventstore.Metadata{Values: map[string]string{"Email": "hidden"}}}, shred.ErrPersonalMetadata},
		{"a value that looks sealed", eventstore.NewEvent{Type: "Note", Data: []byte(`{"text":"` + shred.Prefix + `AAAA"}`)}, shred.ErrReserved},
		{"NUL in the subject", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"a@example.com","plan":"x","customer":"a\u0000b"}`)}, shred.ErrNoSubject},
		{"metadata value quoting", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"m@example.com","plan":"x","customer":"c-m"}`),
			Metadata: eventstore.Metadata{Values: map[string]string{"note": "sent to M@Example.com"}}}, shred.ErrPersonalMetadata},
		{"causation ID in another case", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"m@example.com","plan":"x","customer":"c-m"}`),
			Metadata: eventstore.Metadata{CausationID: "M@EXAMPLE.COM"}}, shred.ErrPersonalMetadata},
		{"correlation ID", eventstore.NewEvent{Type: "Signup", Data: []byte(`{"email":"m@example.com","plan":"x","customer":"c-m"}`),
			Metadata: eventstore.Metadata{CorrelationID: "m@example.com"}}, shred.ErrPersonalMetadata},
		// A version the registry does not know: which of its fields are
		// personal is unknown, so it cannot be stored (in clear).
		{"unregistered version of a registered type", eventstore.NewEvent{Type: "Signup", SchemaVersion: 9, Data: []byte(`{"email":"v@example.com","plan":"x","customer":"c-m"}`)}, schema.ErrUnknownVersion},
	}
	// Without the Validator, so that the Sealer's own checks are what
	// refuses (the schema would refuse an empty customer first).
	store := eventstore.New(f.db.Pool, &eventstore.Config{Schema: f.db.Schema, Sealer: f.sh, Opener: f.sh})
	for _, c := range cases {
		_, err := store.Append(ctx, "bad-1", eventstore.Any, eventstore.NewEvent{Type: "Note", Data: []byte(`{}`)}, c.ev)
		if !errors.Is(err, c.want) || !errors.Is(err, eventstore.ErrInvalidEvent) {
			t.Errorf("%s: %v, want %v and ErrInvalidEvent", c.name, err, c.want)
		}
	}
	if _, err := f.store.StreamVersion(ctx, "bad-1"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("something was written: %v", err)
	}
	var keys int
	if err := f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+f.store.Table("subject_keys")+` WHERE subject = 'c-m'`).Scan(&keys); err != nil || keys != 0 {
		t.Fatalf("a key was made for a refused append: %d %v", keys, err)
	}
	// Optional personal fields all absent: nothing to seal, no subject
	// needed.
	if _, err := store.Append(ctx, "account-anon", eventstore.Any, eventstore.NewEvent{Type: "Signup", Data: []byte(`{"plan":"x","email":null}`)}); err != nil {
		t.Fatalf("an event without personal values: %v", err)
	}
	if err := f.sh.Forget(ctx, ""); !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Fatalf("forget of an empty subject: %v", err)
	}
}

// A changed, moved or keyless sealed value is a typed error on read,
// never plaintext of another event or a silent erasure.
func TestOpenRefusesTampering(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.append(t, "account-t", Signup{Customer: "c-t", Email: "t@example.com", Plan: "pro"}, Signup{Customer: "c-t", Email: "u@example.com", Plan: "pro"})
	events := f.table(t, "account-t")
	sealed := func(data []byte) string {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		return m["email"].(string)
	}
	first, second := sealed(events[0].Data), sealed(events[1].Data)
	flip := []byte(first)
	flip[len(flip)-3] ^= 1
	cases := []struct {
		name string
		data string
		want error
	}{
		{"flipped", strings.Replace(string(events[0].Data), first, string(flip), 1), shred.ErrTampered},
		{"moved from another event", strings.Replace(string(events[0].Data), first, second, 1), shred.ErrTampered},
		{"truncated", strings.Replace(string(events[0].Data), first, first[:len(shred.Prefix)+10], 1), shred.ErrTampered},
		{"not base64", strings.Replace(string(events[0].Data), first, shred.Prefix+"!!", 1), shred.ErrTampered},
	}
	for _, c := range cases {
		e := events[0]
		e.Data = []byte(c.data)
		_, err := f.sh.Open(ctx, f.db.Pool, []eventstore.Event{e}, false)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// A value moved into another field of the same event.
	e := events[0]
	e.Data = []byte(strings.Replace(string(e.Data), `"plan":"pro"`, `"plan":"`+first+`"`, 1))
	if _, err := f.sh.Open(ctx, f.db.Pool, []eventstore.Event{e}, false); !errors.Is(err, shred.ErrTampered) {
		t.Errorf("moved to another field: %v", err)
	}
	// The key row gone (not forgotten: deleted behind Strata's back).
	if _, err := f.db.Pool.Exec(ctx, `DELETE FROM `+f.store.Table("subject_keys")); err != nil {
		t.Fatal(err)
	}
	for _, err := range f.store.ReadStream(ctx, "account-t", 0) {
		if !errors.Is(err, shred.ErrUnknownKey) {
			t.Fatalf("read without a key row: %v", err)
		}
		break
	}
}

// table reads a stream as stored, bypassing the Opener.
func (f *fixture) table(t testing.TB, stream string) []eventstore.Event {
	t.Helper()
	raw := eventstore.New(f.db.Pool, &eventstore.Config{Schema: f.db.Schema})
	var out []eventstore.Event
	for e, err := range raw.ReadStream(context.Background(), stream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// AppendTx and ReadStreamTx seal and open in the caller's transaction:
// on a pool of one connection, held by that transaction, they do not
// wait for a second one (a deadlock once every connection of a pool is
// such a transaction).
func TestSealAndOpenInTheCallersTransaction(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.db.Pool.Config()
	cfg.MaxConns = 1
	one, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	sh := shred.New(one, &shred.Config{Schema: f.db.Schema, Registry: f.reg})
	store := eventstore.New(one, &eventstore.Config{Schema: f.db.Schema, Validator: f.reg, Sealer: sh, Opener: sh, NotifyInterval: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = pgx.BeginFunc(ctx, one, func(tx pgx.Tx) error {
		ne, err := f.reg.Encode(Signup{Customer: "c-tx", Email: "tx@example.com", Plan: "pro"})
		if err != nil {
			return err
		}
		if _, err := store.AppendTx(ctx, tx, "account-tx", eventstore.NoStream, ne); err != nil {
			return err
		}
		for e, err := range store.ReadStreamTx(ctx, tx, "account-tx", 0) {
			if err != nil {
				return err
			}
			if !bytes.Contains(e.Data, []byte(`"tx@example.com"`)) {
				return errors.New("not opened: " + string(e.Data))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Hostile payloads: a personal field spelt in another case (Go's JSON
// decoding matches it to the personal field) is sealed too, so it does
// not outlive a forget; a personal string equal to the erased value is
// refused (it would read as erased while the key exists); a sealed value
// naming a subject that is not valid text is ErrTampered, not a database
// error.
func TestSealHostilePayloads(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	data := `{"customer":"c-case","email":"a@example.com","EMAIL":"case@example.com","plan":"x","Address":{"STREET":"9 Case Street"}}`
	if _, err := f.store.Append(ctx, "account-case", eventstore.Any, eventstore.NewEvent{Type: "Signup", Data: []byte(data)}); err != nil {
		t.Fatal(err)
	}
	if hits := scanSchema(t, f.db.Pool, f.db.Schema, []string{"case@example.com", "9 Case Street"}); len(hits) > 0 {
		t.Fatalf("a case variant of a personal field stored in clear: %v", hits)
	}
	if err := f.sh.Forget(ctx, "c-case"); err != nil {
		t.Fatal(err)
	}
	got, err := schema.DecodeAs[Signup](f.reg, f.read(t, "account-case")[0])
	if err != nil || got.Email != schema.Erased || got.Address == nil || got.Address.Street != schema.Erased {
		t.Fatalf("after forget: %+v %v", got, err)
	}

	_, err = f.store.Append(ctx, "account-erased", eventstore.Any, eventstore.NewEvent{Type: "Signup",
		Data: []byte(`{"customer":"c-e","email":"e@example.com","plan":"x","address":{"street":"` + schema.Erased + `"}}`)})
	if !errors.Is(err, shred.ErrReserved) || !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("a personal value equal to the erased value: %v", err)
	}

	// A copy of an unregistered type (as Pub/Sub's are) may hold anything
	// that looks sealed; its subject is checked before it is looked up.
	for name, subject := range map[string]string{"invalid UTF-8": "\xff\xfe", "NUL": "a\x00b"} {
		raw := []byte{'s', 0, 0, 0, 1}
		raw = append(raw, make([]byte, 16)...)
		raw = append(raw, 0, byte(len(subject)))
		raw = append(raw, subject...)
		raw = append(raw, make([]byte, 12+16)...)
		v := shred.Prefix + base64.RawURLEncoding.EncodeToString(raw)
		e := eventstore.Event{Type: "Other", Data: []byte(`{"x":"` + v + `"}`)}
		if _, err := f.sh.Open(ctx, f.db.Pool, []eventstore.Event{e}, false); !errors.Is(err, shred.ErrTampered) {
			t.Errorf("%s: %v, want ErrTampered", name, err)
		}
	}
}
