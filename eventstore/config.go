package eventstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/internal/subdefault"
)

// Limits that are not configurable: they keep keys inside Postgres' index
// row size.
const (
	// MaxStreamIDLength is the longest stream ID, in bytes.
	MaxStreamIDLength = 512
	// MaxTypeLength is the longest event type name, in bytes.
	MaxTypeLength = 256
	// MaxCorrelationIDLength is the longest correlation or causation ID, in
	// bytes (correlation IDs are indexed).
	MaxCorrelationIDLength = 1024
)

// Config configures a Store. The zero value (or nil) means every default.
type Config struct {
	// Schema is the Postgres schema holding Strata's tables, as created by
	// migrations.Apply. Default "strata".
	Schema string
	// Validator checks every event before an append writes anything. Pass
	// a *schema.Registry. Default nil: events are only checked to be well
	// formed (valid JSON, sizes, names).
	Validator Validator
	// Sealer encrypts events' personal fields before an append writes
	// anything, after the Validator. Pass a *shred.Shredder (with the same
	// one as Opener). Default nil: data is stored as given.
	Sealer Sealer
	// Opener decrypts sealed fields of the events every read and
	// subscription returns, or gives their erased value once their key is
	// forgotten. Pass a *shred.Shredder. Default nil: events are returned
	// as stored.
	Opener Opener
	// MaxEventSize is the largest event accepted, in bytes of Data plus
	// encoded Metadata. Default 1 MiB.
	MaxEventSize int
	// MaxAppendEvents is the most events one append may carry. Default 10,000.
	MaxAppendEvents int
	// ResolveTimeout bounds how long Append spends, after its connection
	// was lost with the statement possibly on the server, finding out on
	// another connection whether its events are stored. It runs from the
	// failure, whether or not the append's context has ended (a deadline
	// that made pgx close the connection is one way to lose it), so Append
	// may return up to ResolveTimeout after its context ended. When the
	// outcome cannot be learned in that time Append returns an
	// *AmbiguousError. Default 5s.
	ResolveTimeout time.Duration
	// NotifyInterval is the least time between two wake-up notifications
	// this Store sends to subscribers (LISTEN/NOTIFY). An append notifies
	// when it is the first after this Store's appends paused for at least
	// NotifyInterval (subscribers may be idle then), and otherwise at most
	// once per 50 NotifyIntervals while appends keep coming (subscribers
	// are busy reading then, and poll briefly after every read that found
	// events, so the appends in between are seen just as fast). Keeping
	// notifications rare matters: Postgres serialises the commits of
	// notifying transactions and wakes every listening connection of the
	// database for each one, so a NOTIFY in every append would halve
	// throughput under load. Default 2ms; negative disables notifications
	// (subscribers then rely on polling).
	NotifyInterval time.Duration
	// ListenerPing is how long the connection that LISTENs for wake-ups
	// may go without a notification before it is checked with a round
	// trip; a check unanswered within ListenerPing makes it reconnect. A
	// connection can die without either end noticing (a network path or a
	// NAT dropped, a failover), and subscribers would then be left to their
	// PollInterval. Default 10s.
	ListenerPing time.Duration
	// DisableCombiner turns the append combiner off: each Append then
	// sends its own statement and commits on its own. With the combiner
	// (the default), the Appends that arrive while others are on their way
	// to the database are combined into one statement and one commit, each
	// keeping its own outcome (expected version, conflict, duplicate or
	// invalid event, result); an Append that finds nothing on its way goes
	// at once. AppendTx never combines.
	DisableCombiner bool
	// Logger receives the store's rare warnings. Default slog.Default().
	Logger *slog.Logger
	// MeterProvider makes the metrics of appends and of the store's
	// subscriptions (names in package telemetry). Default: the global
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// TracerProvider makes the strata.append spans. Default: the global
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

// Store is the PostgreSQL event store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	cfg    Config
	schema string // quoted identifier
	sql    queries

	shared *storeShared // shared with the Stores withValidator makes
	tel    *storeTelemetry
	comb   *combiner // nil when Config.DisableCombiner; shared like shared
}

// storeShared is the mutable state of a Store, behind a pointer so that the
// Stores withValidator derives from one another share it: one notification
// rhythm and one wake-up listener per Store and its derivatives.
type storeShared struct {
	lastNotify atomic.Int64 // unix nanos of the last append that notified
	lastAppend atomic.Int64 // unix nanos of the start of the last append
	hub        wakeHub      // this process's subscribers to wake-ups
	horizon    horizonSeen  // the horizon as Horizon last saw it
	waits      waitRegistry // this process's WaitFor calls (waitfor.go)
}

// New returns a Store on pool. The tables must exist (migrations.Apply);
// New does not touch the database.
func New(pool *pgxpool.Pool, cfg *Config) *Store {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Schema == "" {
		c.Schema = "strata"
	}
	subdefault.Or(&c.MaxEventSize, 1<<20)
	subdefault.Or(&c.MaxAppendEvents, 10_000)
	subdefault.Or(&c.ResolveTimeout, 5*time.Second)
	subdefault.Or(&c.ListenerPing, 10*time.Second)
	if c.NotifyInterval == 0 {
		c.NotifyInterval = 2 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	s := &Store{pool: pool, cfg: c, schema: pgx.Identifier{c.Schema}.Sanitize(), shared: &storeShared{}}
	s.sql = buildQueries(c.Schema, s.channel())
	s.tel = newStoreTelemetry(c)
	if !c.DisableCombiner {
		s.comb = newCombiner(s)
	}
	return s
}

// withValidator returns a Store on the same pool, schema and tables as s
// that checks appended events with v instead of Config.Validator (nil: no
// validator, events are only checked to be well formed). Everything else
// is shared with s: the configuration, the telemetry, the pacing of
// wake-up notifications and the one LISTEN connection that wakes this
// process's subscriptions. Packages that append events that are not of
// the application's registered types, such as pubsub's messages, get it
// through internal/storeview.
func (s *Store) withValidator(v Validator) *Store {
	d := *s // immutable fields and pointers; the mutable state is in shared
	d.cfg.Validator = v
	return &d
}

// Pool returns the pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Table returns the schema-qualified, quoted name of one of Strata's
// tables, for packages that keep their own tables beside the store's.
func (s *Store) Table(name string) string { return s.schema + "." + pgx.Identifier{name}.Sanitize() }

// channel is the LISTEN/NOTIFY channel on which appends wake subscribers.
// It fits Postgres' 63-byte limit on names: for a schema name longer than
// 49 bytes it ends in a hash of the name instead of the name.
func (s *Store) channel() string {
	if ch := "strata_events_" + s.cfg.Schema; len(ch) <= 63 {
		return ch
	}
	return fmt.Sprintf("strata_events_%016x", uint64(appendLockSeed(s.cfg.Schema)))
}

// querier is what the store needs of a pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
