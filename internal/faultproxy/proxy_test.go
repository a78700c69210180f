package faultproxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/internal/pgtest"
)

// frontendStream is a client's side of a session: SSLRequest, startup,
// then an extended-protocol statement and a simple query.
func frontendStream() ([]byte, []byte) {
	var b []byte
	untyped := func(code uint32, body string) {
		b = binary.BigEndian.AppendUint32(b, uint32(8+len(body)))
		b = binary.BigEndian.AppendUint32(b, code)
		b = append(b, body...)
	}
	typed := func(t byte, body string) {
		b = append(b, t)
		b = binary.BigEndian.AppendUint32(b, uint32(4+len(body)))
		b = append(b, body...)
	}
	untyped(sslRequest, "")
	untyped(196608, "user\x00postgres\x00\x00")
	typed('P', "\x00SELECT 1\x00\x00\x00")
	typed('B', "\x00\x00\x00\x00\x00\x00\x00\x00")
	typed('E', "\x00\x00\x00\x00\x00")
	typed('S', "")
	typed('Q', "SELECT 1\x00")
	return b, []byte{0, 0, 'P', 'B', 'E', 'S', 'Q'}
}

// TestFrontendReaderAnyChunking: message boundaries and types are found
// however the stream is split into reads.
func TestFrontendReaderAnyChunking(t *testing.T) {
	stream, want := frontendStream()
	for size := 1; size <= len(stream); size++ {
		var r frontendReader
		var got []byte
		var codes []int32
		for off := 0; off < len(stream); off += size {
			chunk := stream[off:min(off+size, len(stream))]
			for i := 0; i < len(chunk); {
				n, ev := r.feed(chunk[i:])
				i += n
				if ev.end {
					got = append(got, ev.typ)
					codes = append(codes, ev.request)
				}
			}
		}
		if string(got) != string(want) || codes[0] != sslRequest || codes[1] != 196608 {
			t.Fatalf("chunks of %d: messages %q (codes %v), want %q", size, got, codes, want)
		}
	}
}

// TestBackendReaderCountsReadyForQuery: the answer to SSLRequest is one
// untyped byte; ReadyForQuery messages are counted across reads.
func TestBackendReaderCountsReadyForQuery(t *testing.T) {
	b := []byte{'N'}
	msg := func(t byte, body string) {
		b = append(b, t)
		b = binary.BigEndian.AppendUint32(b, uint32(4+len(body)))
		b = append(b, body...)
	}
	msg('R', "\x00\x00\x00\x00")
	msg('Z', "I")
	msg('D', "\x00\x01\x00\x00\x00\x01Z") // a 'Z' inside a row is not a message
	msg('Z', "I")
	for size := 1; size <= len(b); size++ {
		r := backendReader{oneByte: 1}
		n := 0
		for off := 0; off < len(b); off += size {
			n += r.feed(b[off:min(off+size, len(b))])
		}
		if n != 2 || r.tls {
			t.Fatalf("chunks of %d: %d ReadyForQuery (tls %v), want 2", size, n, r.tls)
		}
	}
}

// proxied starts a proxy in front of the test server and returns it with
// the server's connection string through it.
func proxied(t *testing.T) (*Proxy, *pgx.ConnConfig, *pgtest.DB) {
	t.Helper()
	db := pgtest.NewEmpty(t)
	cfg := pgtest.Config(t).ConnConfig
	p, err := New(fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg.Host, cfg.Port, cfg.TLSConfig, cfg.Fallbacks = p.Host(), p.Port(), nil, nil
	return p, cfg, db
}

func connect(t *testing.T, cfg *pgx.ConnConfig) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// backendListed reports whether the server process pid is in
// pg_stat_activity.
func backendListed(t *testing.T, db *pgtest.DB, pid uint32) bool {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, int32(pid)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// waitGone waits (bounded) until the server process pid has ended.
func waitGone(t *testing.T, db *pgtest.DB, pid uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for backendListed(t, db, pid) {
		if time.Now().After(deadline) {
			t.Fatalf("server process %d still running after 10s", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCutPolicies: a cut on Execute forwards the statement and its Sync,
// then the client gets an error and none of the reply; the server's side
// is closed at once, after the reply (the statement committed), or held
// (the backend lives on until the proxy closes).
func TestCutPolicies(t *testing.T) {
	p, cfg, db := proxied(t)
	ctx := context.Background()
	table := pgx.Identifier{db.Schema, "t"}.Sanitize()
	if _, err := db.Pool.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{db.Schema}.Sanitize()+`; CREATE TABLE `+table+` (x int)`); err != nil {
		t.Fatal(err)
	}
	count := func(x int) int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE x = $1`, x).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Pass-through first.
	c := connect(t, cfg)
	if _, err := c.Exec(ctx, `INSERT INTO `+table+` VALUES ($1)`, 1); err != nil || count(1) != 1 {
		t.Fatalf("without faults: %v, %d rows", err, count(1))
	}

	// After the reply: committed, and the client cannot know.
	p.SetCut(&Cut{Types: "E", Upstream: UpstreamAfterReply, Times: 1})
	pid := c.PgConn().PID()
	if _, err := c.Exec(ctx, `INSERT INTO `+table+` VALUES ($1)`, 2); err == nil {
		t.Fatal("cut after the reply: Exec returned nil, want an error")
	}
	waitGone(t, db, pid)
	if count(2) != 1 || p.Cuts() != 1 {
		t.Fatalf("cut after the reply: %d rows, %d cuts; want 1 and 1", count(2), p.Cuts())
	}

	// Hold: the backend outlives the client's connection.
	c = connect(t, cfg)
	pid = c.PgConn().PID()
	p.SetCut(&Cut{Types: "E", Upstream: UpstreamHold, Times: 1})
	if _, err := c.Exec(ctx, `SELECT $1::int`, 3); err == nil {
		t.Fatal("hold: Exec returned nil, want an error")
	}
	if !c.PgConn().IsClosed() {
		t.Fatal("hold: the client's connection is still open")
	}
	if !backendListed(t, db, pid) {
		t.Fatal("hold: the backend ended with the client's connection")
	}

	// Close: the backend ends.
	c = connect(t, cfg)
	pid2 := c.PgConn().PID()
	p.SetCut(&Cut{Types: "E", Upstream: UpstreamClose, Times: 1})
	if _, err := c.Exec(ctx, `SELECT $1::int`, 4); err == nil {
		t.Fatal("close: Exec returned nil, want an error")
	}
	waitGone(t, db, pid2)
	if !backendListed(t, db, pid) {
		t.Fatal("hold: the held backend ended before the proxy closed")
	}
	if p.Cuts() != 3 {
		t.Fatalf("%d cuts, want 3", p.Cuts())
	}

	// The rule is spent (Times: 1): statements pass again.
	c = connect(t, cfg)
	if _, err := c.Exec(ctx, `SELECT $1::int`, 5); err != nil {
		t.Fatalf("after the rule was spent: %v", err)
	}
	p.Close()
	waitGone(t, db, pid)
}

// TestRefuseBlackholeLatencyCutAll: the other faults.
func TestRefuseBlackholeLatencyCutAll(t *testing.T) {
	p, cfg, _ := proxied(t)
	ctx := context.Background()

	p.SetRefuse(true)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if c, err := pgx.ConnectConfig(cctx, cfg); err == nil {
		c.Close(ctx)
		t.Fatal("refuse: connected")
	}
	cancel()
	p.SetRefuse(false)
	c := connect(t, cfg)

	p.SetLatency(50 * time.Millisecond)
	start := time.Now()
	if _, err := c.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("latency 50ms each way: a round trip took %s", d)
	}
	p.SetLatency(0)

	p.SetBlackhole(true)
	bctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := c.Exec(bctx, `SELECT 1`)
	cancel()
	if err == nil {
		t.Fatal("blackhole: the query was answered")
	}
	p.SetBlackhole(false)

	c = connect(t, cfg)
	p.CutAll()
	if _, err := c.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("CutAll: the query was answered")
	}
	c = connect(t, cfg)
	if _, err := c.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("after CutAll, a new connection: %v", err)
	}
}

// TestPartitionHoldsServerSide: a client that gives up on its connection
// in a partition leaves the server's side open (half-open); the server
// process lives on after the partition, until the proxy closes.
func TestPartitionHoldsServerSide(t *testing.T) {
	p, cfg, db := proxied(t)
	ctx := context.Background()
	c := connect(t, cfg)
	pid := c.PgConn().PID()
	p.SetPartition(true)
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := c.PgConn().Exec(pctx, `SELECT 1`).ReadAll()
	cancel()
	if err == nil {
		t.Fatal("partition: the query was answered")
	}
	// The client gives up on the socket at once (pgx would first try a
	// CancelRequest and a Terminate, for up to 15 s).
	_ = c.PgConn().Conn().Close()
	time.Sleep(200 * time.Millisecond)
	p.SetPartition(false)
	time.Sleep(100 * time.Millisecond)
	if !backendListed(t, db, pid) {
		t.Fatal("partition: the client's close reached the server")
	}
	if _, err := connect(t, cfg).Exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("after the partition, a new connection: %v", err)
	}
	p.Close()
	waitGone(t, db, pid)
}

// TestDropCancels: a CancelRequest does not get through while cancels are
// dropped, and does again after.
func TestDropCancels(t *testing.T) {
	p, cfg, db := proxied(t)
	ctx := context.Background()
	c := connect(t, cfg)
	pid := c.PgConn().PID()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, `SELECT pg_sleep(30)`)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'`, int32(pid)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the query did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.SetDropCancels(true)
	_ = c.PgConn().CancelRequest(ctx)
	select {
	case err := <-done:
		t.Fatalf("the dropped cancel ended the query: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	p.SetDropCancels(false)
	if err := c.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the cancelled query returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancel did not end the query")
	}
}

// TestCutAfterBytes: a byte count fires the rule at the end of the message
// that reaches it (the startup does not count), and the statement up to
// its Sync or Query is forwarded first.
func TestCutAfterBytes(t *testing.T) {
	p, cfg, _ := proxied(t)
	ctx := context.Background()
	p.SetCut(&Cut{AfterBytes: 1, Upstream: UpstreamAfterReply, Times: 1})
	c := connect(t, cfg) // the startup is not counted
	if _, err := c.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("the first statement after 1 byte was answered")
	}
	if p.Cuts() != 1 {
		t.Fatalf("%d cuts, want 1", p.Cuts())
	}
	c = connect(t, cfg)
	if _, err := c.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatalf("after the rule was spent: %v", err)
	}
}
