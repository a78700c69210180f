package pgtx_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/internal/pgtx"
)

// endGoroutines counts the goroutines running pgtx's background ending.
func endGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "internal/pgtx.end(")
}

// TestEndStopsWhenPoolCloses: End whose context ended goes on in
// the background. Once the application closes the pool, no attempt can
// succeed; the background ending must stop rather than retry on the
// closed pool for the whole EndWithin (30 s by default), a goroutine that
// outlives the pool (and that goleak reports after a Publisher.Close that
// interrupted a COMMIT).
func TestEndStopsWhenPoolCloses(t *testing.T) {
	db := pgtest.NewEmpty(t)
	pool, err := pgxpool.New(context.Background(), db.URL)
	if err != nil {
		t.Fatal(err)
	}
	before := endGoroutines()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pool.Close()
	_ = pgtx.End(ctx, pool, 1, pgtx.DefaultEndWithin)
	time.Sleep(3 * time.Second)
	if n := endGoroutines() - before; n > 0 {
		t.Fatalf("pgtx.End still retrying on a closed pool 3 s after it closed (%d goroutines)", n)
	}
}
