package dashboard_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/dashboard"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/migrations"
)

// TestScreenshots writes the README's pictures of the dashboard,
// docs/dashboard-{overview,trace,stream}.png, from the shop's events: run
// it with STRATA_UI_SCREENSHOTS=1. A slow search index falls behind while
// orders come in and catches up after, so the lag charts have a shape.
func TestScreenshots(t *testing.T) {
	if os.Getenv("STRATA_UI_SCREENSHOTS") != "1" {
		t.Skip("set STRATA_UI_SCREENSHOTS=1 to write docs/dashboard-*.png")
	}
	// A private cluster: no other test's open transaction holds the
	// readers back in the pictures.
	c := pgtest.StartCluster(t)
	pool, err := pgxpool.New(context.Background(), c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := migrations.Apply(context.Background(), pool, "shop"); err != nil {
		t.Fatal(err)
	}
	sh := newShopOn(t, &pgtest.DB{Pool: pool, Schema: "shop", URL: c.URL}, 3)
	waitParked(t, sh)
	// The search index stalls now and then (a slow dependency) and
	// catches up after: a sawtooth in its lag chart.
	var stalled atomic.Bool
	sh.start(eventstore.SubscriptionConfig{Name: "projection:search_index", BatchSize: 20, Partitions: 2},
		func(ctx context.Context, _ pgx.Tx, events []eventstore.Event) error {
			for stalled.Load() && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		})
	_, ts := serve(t, sh.store, &dashboard.Config{Registry: sh.reg, Actions: true, SampleInterval: 250 * time.Millisecond, History: 90 * time.Second})
	start, n := time.Now(), 1010
	for round := 0; time.Since(start) < 80*time.Second; round++ {
		stalled.Store(round%2 == 0)
		phase := time.Now()
		for time.Since(phase) < 10*time.Second {
			sh.placeOrder(t, n)
			n++
			time.Sleep(100 * time.Millisecond)
		}
	}
	stalled.Store(false)
	ctx := browser(t)
	shoot := func(name, path, ready string) {
		step(t, ctx, "open "+path, chromedp.Navigate(ts.URL+path), chromedp.WaitVisible(chromedp.CSS(ready)))
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(c, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shoot("dashboard-overview.png", "/", "#subs")
	shoot("dashboard-trace.png", "/trace?id=corr-1001", "#trace")
	shoot("dashboard-stream.png", "/streams?id=order-1000", "#stream-id")
}
