package telemetry_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-go/strata/telemetry"
)

// TestTraceContextRoundTrip: what Inject writes, Extract reads back as the
// same trace, span and trace state.
func TestTraceContextRoundTrip(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "root")
	defer span.End()
	ts, err := trace.ParseTraceState("vendor=abc")
	if err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext().WithTraceState(ts)
	ctx = trace.ContextWithSpanContext(ctx, sc)

	m := map[string]string{}
	telemetry.Inject(ctx, m)
	if m[telemetry.KeyTraceparent] == "" || m[telemetry.KeyTracestate] != "vendor=abc" {
		t.Fatalf("injected %v", m)
	}
	if !telemetry.HasTraceContext(m) {
		t.Fatal("HasTraceContext is false after Inject")
	}
	got := trace.SpanContextFromContext(telemetry.Extract(context.Background(), m))
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || got.TraceState().String() != "vendor=abc" || !got.IsRemote() {
		t.Fatalf("extracted %v, want the remote form of %v", got, sc)
	}
}

// TestTraceContextAbsent: no span, nothing injected; no traceparent, ctx
// unchanged; a malformed traceparent is not a trace context.
func TestTraceContextAbsent(t *testing.T) {
	t.Parallel()
	m := map[string]string{}
	telemetry.Inject(context.Background(), m)
	if len(m) != 0 {
		t.Fatalf("injected %v without a span", m)
	}
	ctx := context.Background()
	if telemetry.Extract(ctx, map[string]string{"user": "ann"}) != ctx {
		t.Fatal("Extract without a traceparent changed ctx")
	}
	if telemetry.HasTraceContext(map[string]string{telemetry.KeyTraceparent: "00-zz-yy-01"}) || telemetry.HasTraceContext(nil) {
		t.Fatal("HasTraceContext accepted a malformed or missing traceparent")
	}
}

// TestWithTraceContext: the caller's map is never modified, a traceparent
// it holds is kept, and without a span nothing is allocated. (Not
// parallel: AllocsPerRun needs the test alone.)
func TestWithTraceContext(t *testing.T) {
	orig := map[string]string{"user": "ann"}
	same := telemetry.WithTraceContext(context.Background(), orig)
	if reflect.ValueOf(same).Pointer() != reflect.ValueOf(orig).Pointer() {
		t.Fatal("without a span, WithTraceContext returned another map")
	}
	if n := testing.AllocsPerRun(100, func() { _ = telemetry.WithTraceContext(context.Background(), orig) }); n != 0 {
		t.Fatalf("WithTraceContext allocates %.0f times without a span", n)
	}
	if telemetry.WithTraceContext(context.Background(), nil) != nil {
		t.Fatal("nil map without a span did not stay nil")
	}

	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "root")
	defer span.End()
	got := telemetry.WithTraceContext(ctx, orig)
	if len(orig) != 1 {
		t.Fatalf("caller's map modified: %v", orig)
	}
	if got["user"] != "ann" || !strings.Contains(got[telemetry.KeyTraceparent], span.SpanContext().TraceID().String()) {
		t.Fatalf("got %v", got)
	}
	if n := telemetry.WithTraceContext(ctx, nil); !telemetry.HasTraceContext(n) {
		t.Fatalf("nil map with a span: %v", n)
	}
	mine := map[string]string{telemetry.KeyTraceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	if kept := telemetry.WithTraceContext(ctx, mine); kept[telemetry.KeyTraceparent] != mine[telemetry.KeyTraceparent] {
		t.Fatalf("the caller's traceparent was replaced: %v", kept)
	}
}

// TestHealthHandler: the JSON report, the worst state, and the status
// codes (Failing 503; Lagging 200 unless LaggingUnavailable; a check that
// overruns the timeout is Failing).
func TestHealthHandler(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ready := func(context.Context) telemetry.Health { return telemetry.Health{} }
	lagging := func(context.Context) telemetry.Health {
		return telemetry.Health{State: telemetry.Lagging, Reason: "1200 events behind"}
	}
	failing := func(context.Context) telemetry.Health {
		return telemetry.Health{State: telemetry.Failing, Reason: "broker down", Since: since}
	}
	slow := func(ctx context.Context) telemetry.Health {
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond) // returns late: the handler must not wait
		return telemetry.Health{}
	}
	cases := []struct {
		name   string
		checks map[string]telemetry.HealthFunc
		cfg    *telemetry.HealthConfig
		code   int
		state  string
		body   string // exact JSON, when set
	}{
		{"none", nil, nil, 200, "ready", `{"state":"ready","checks":{}}`},
		{"ready", map[string]telemetry.HealthFunc{"relay": ready, "projection:a": ready}, nil, 200, "ready",
			`{"state":"ready","checks":{"projection:a":{"state":"ready"},"relay":{"state":"ready"}}}`},
		{"lagging", map[string]telemetry.HealthFunc{"relay": ready, "projection:a": lagging}, nil, 200, "lagging",
			`{"state":"lagging","checks":{"projection:a":{"state":"lagging","reason":"1200 events behind"},"relay":{"state":"ready"}}}`},
		{"lagging unavailable", map[string]telemetry.HealthFunc{"projection:a": lagging}, &telemetry.HealthConfig{LaggingUnavailable: true}, 503, "lagging", ""},
		{"failing", map[string]telemetry.HealthFunc{"relay": failing, "projection:a": lagging}, nil, 503, "failing",
			`{"state":"failing","checks":{"projection:a":{"state":"lagging","reason":"1200 events behind"},"relay":{"state":"failing","reason":"broker down","since":"2026-01-02T03:04:05Z"}}}`},
		{"timeout", map[string]telemetry.HealthFunc{"slow": slow, "relay": ready}, &telemetry.HealthConfig{Timeout: 20 * time.Millisecond}, 503, "failing", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(telemetry.NewHealthHandler(c.checks, c.cfg))
			defer srv.Close()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var raw json.RawMessage
			if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.code {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, c.code, raw)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var rep telemetry.HealthReport
			if err := json.Unmarshal(raw, &rep); err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			if rep.State.String() != c.state || len(rep.Checks) != len(c.checks) {
				t.Errorf("report %s, want state %s and %d checks", raw, c.state, len(c.checks))
			}
			if c.body != "" && string(raw) != c.body {
				t.Errorf("body\n%s\nwant\n%s", raw, c.body)
			}
			if c.name == "timeout" && (rep.Checks["slow"].State != telemetry.Failing || !strings.Contains(rep.Checks["slow"].Reason, "timed out") || rep.Checks["relay"].State != telemetry.Ready) {
				t.Errorf("timeout report %s", raw)
			}
		})
	}
}

// TestStateText: states read back what they write; unknown names fail.
func TestStateText(t *testing.T) {
	t.Parallel()
	for _, s := range []telemetry.State{telemetry.Ready, telemetry.Lagging, telemetry.Failing} {
		b, _ := s.MarshalText()
		var got telemetry.State
		if err := got.UnmarshalText(b); err != nil || got != s {
			t.Errorf("%v: round trip gave %v, %v", s, got, err)
		}
	}
	var s telemetry.State
	if err := s.UnmarshalText([]byte("sleepy")); err == nil {
		t.Error("unknown state accepted")
	}
}

// TestDocumented: the package documentation's tables name every metric,
// span and attribute key, each metric with its unit.
func TestDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	for _, m := range telemetry.Metrics() {
		row := "| `" + m.Name + "` | " + string(m.Kind) + " | `" + m.Unit + "` |"
		if !strings.Contains(text, row) {
			t.Errorf("doc.go has no table row starting %q", row)
		}
		for _, a := range m.Attributes {
			if !strings.Contains(text, "`"+a+"`") {
				t.Errorf("doc.go does not mention attribute %q of %s", a, m.Name)
			}
		}
	}
	for _, s := range telemetry.Spans() {
		row := "| `" + s.Name + "` | " + s.Kind + " |"
		if !strings.Contains(text, row) {
			t.Errorf("doc.go has no table row starting %q", row)
		}
		for _, a := range s.Attributes {
			if !strings.Contains(text, "`"+a+"`") {
				t.Errorf("doc.go does not mention attribute %q of %s", a, s.Name)
			}
		}
	}
}
