package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
)

// Read your own writes over HTTP: POST /orders places an order, waits
// until the order_summary projection has handled it (projection.Runner.WaitFor,
// woken by the projection's commit in whichever process runs it) and
// answers with the order's read-model row, so the client sees its order
// at once although the read side is built asynchronously.
//
//	curl -X POST 'localhost:8080/orders?id=42&customer=ada&cents=1999'
//
// Run the shop with -http :8080 -follow to serve it.

// summaryRow is an order_summary row as the API returns it.
type summaryRow struct {
	OrderID    string    `json:"order_id"`
	Customer   string    `json:"customer"`
	TotalCents int64     `json:"total_cents"`
	Currency   string    `json:"currency"`
	Status     string    `json:"status"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// ordersHandler serves POST /orders?id=&customer=&cents=, waiting up to
// wait for the read side.
func ordersHandler(store *eventstore.Store, reg *schema.Registry, runner *projection.Runner, wait time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		id, customer := q.Get("id"), q.Get("customer")
		cents, err := strconv.ParseInt(q.Get("cents"), 10, 64)
		if id == "" || customer == "" || err != nil || cents <= 0 {
			http.Error(w, "want id, customer and cents > 0", http.StatusBadRequest)
			return
		}
		ev, err := reg.Encode(OrderPlaced{Customer: customer, Email: customer + "@example.com", TotalCents: cents, Currency: "USD"})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ev.Metadata.CorrelationID = newCorrelationID()
		res, err := store.Append(r.Context(), "order-"+id, eventstore.NoStream, ev)
		switch {
		case errors.Is(err, eventstore.ErrConflict):
			http.Error(w, "order "+id+" exists", http.StatusConflict)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// The order is stored; wait (a bounded time) for the read side.
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		if err := runner.WaitFor(ctx, "order_summary", res.Position); err != nil {
			// Placed, but the read model is behind: say where to look later.
			w.Header().Set("Location", "/orders/"+id)
			http.Error(w, "order placed; summary not ready: "+err.Error(), http.StatusAccepted)
			return
		}
		var row summaryRow
		err = store.Pool().QueryRow(r.Context(), `SELECT order_id, customer, total_cents, currency, status, updated_at FROM `+
			store.Table("order_summary")+` WHERE order_id = $1`, id).
			Scan(&row.OrderID, &row.Customer, &row.TotalCents, &row.Currency, &row.Status, &row.UpdatedAt)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(row)
	})
}
