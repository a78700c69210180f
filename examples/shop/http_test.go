package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/projection"
)

// POST /orders answers with the order's read-model row: the handler waits
// for the projection (running beside it) to handle the append before it
// reads, so every answer shows the order just placed. Without the wait
// the row would often be missing (the projection runs asynchronously).
func TestPlaceOrderReadsItsOwnWrite(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	reg, err := newRegistry()
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema, Validator: reg})
	if _, err := db.Pool.Exec(ctx, fmt.Sprintf(createSummary, store.Table("order_summary"))); err != nil {
		t.Fatal(err)
	}
	runner := projection.NewRunner(store, []projection.Projection{summaryProjection(store, reg)}, nil)
	rctx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- runner.Run(rctx) }()
	defer func() { stop(); <-ran }()
	pgtest.WaitFor(t, "the projection to start", 30*time.Second, func() bool {
		st, err := runner.Status(ctx)
		return err == nil && len(st) == 1 && len(st[0].Owners) == 1
	})
	// (90s: on a shared server, another client's transaction left open
	// holds every gap-safe reader back meanwhile.)
	srv := httptest.NewServer(ordersHandler(store, reg, runner, 90*time.Second))
	defer srv.Close()

	for i := range 20 {
		resp, err := http.Post(fmt.Sprintf("%s/orders?id=%d&customer=ada&cents=%d", srv.URL, i, 100+i), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var row summaryRow
		if err := json.Unmarshal(body, &row); resp.StatusCode != http.StatusCreated || err != nil {
			t.Fatalf("order %d: %s %s", i, resp.Status, body)
		}
		if row.OrderID != fmt.Sprint(i) || row.TotalCents != int64(100+i) || row.Status != "placed" {
			t.Fatalf("order %d: row %+v", i, row)
		}
	}
	for _, c := range []struct {
		query string
		code  int
	}{{"id=3&customer=ada&cents=5", http.StatusConflict}, {"id=x&customer=ada&cents=0", http.StatusBadRequest}, {"customer=ada&cents=5", http.StatusBadRequest}} {
		resp, err := http.Post(srv.URL+"/orders?"+c.query, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Fatalf("%s: %s, want %d", c.query, resp.Status, c.code)
		}
	}
}
