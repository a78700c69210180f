package aggregate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/schema"
)

// Incremented is version 2 of the counter's event; version 1 called the
// field "amount".
type Incremented struct {
	By int `json:"by"`
}

// Reset sets the counter back to zero.
type Reset struct{}

// Unregistered is an event the registry does not know.
type Unregistered struct{}

var (
	incrementedV1 = []byte(`{"type":"object","required":["amount"],"properties":{"amount":{"type":"integer"}}}`)
	incrementedV2 = []byte(`{"type":"object","required":["by"],"additionalProperties":false,
		"properties":{"by":{"type":"integer","minimum":0}}}`)
	resetV1 = []byte(`{"type":"object","additionalProperties":false}`)
)

// Counter is the aggregate of the tests.
type Counter struct {
	aggregate.Root
	Count int `json:"count"`
}

func (c *Counter) Apply(ev any) {
	switch e := ev.(type) {
	case Incremented:
		c.Count += e.By
	case Reset:
		c.Count = 0
	}
}

func newCounter(string) *Counter { return &Counter{} }

func newRegistry(tb testing.TB) *schema.Registry {
	tb.Helper()
	reg := schema.NewRegistry()
	for _, err := range []error{
		schema.Register[Incremented](reg, "Incremented", 2, incrementedV2),
		reg.RegisterVersion("Incremented", 1, incrementedV1),
		reg.Upcast("Incremented", 1, func(doc map[string]any) (map[string]any, error) {
			doc["by"] = doc["amount"]
			delete(doc, "amount")
			return doc, nil
		}),
		schema.Register[Reset](reg, "Reset", 1, resetV1),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return reg
}

// env is one test's database, store and registry.
type env struct {
	db    *pgtest.DB
	store *eventstore.Store
	reg   *schema.Registry
	log   *syncBuffer
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	db := pgtest.New(tb)
	reg := newRegistry(tb)
	log := &syncBuffer{}
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, Validator: reg, NotifyInterval: -1})
	return &env{db: db, store: store, reg: reg, log: log}
}

// repo returns a counter repository; cfg's Logger, when nil, writes to
// e.log.
func (e *env) repo(cfg *aggregate.Config) *aggregate.Repository[*Counter] {
	var c aggregate.Config
	if cfg != nil {
		c = *cfg
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(e.log, nil))
	}
	return aggregate.NewRepository(e.store, e.reg, newCounter, &c)
}

// stream reads a stream whole, straight from the store.
func (e *env) stream(tb testing.TB, id string) []eventstore.Event {
	tb.Helper()
	var out []eventstore.Event
	for ev, err := range e.store.ReadStream(context.Background(), id, 0) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// loads records the LoadStats of a repository.
type loads struct {
	mu  sync.Mutex
	all []aggregate.LoadStats
}

func (l *loads) record(s aggregate.LoadStats) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, s)
}

func (l *loads) last(tb testing.TB) aggregate.LoadStats {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 {
		tb.Fatal("no load recorded")
	}
	return l.all[len(l.all)-1]
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	must(tb, err)
	return b
}
