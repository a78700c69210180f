package dashboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/strata-go/strata/dashboard"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// The dashboard mounted under /strata/ of an application's own admin
// server, read-only, behind a bearer token.
func Example() {
	pool, cleanup := pgtest.Example("example_dashboard")
	defer cleanup()
	store := eventstore.New(pool, &eventstore.Config{Schema: "example_dashboard"})

	srv := dashboard.New(store, &dashboard.Config{Prefix: "/strata/", BearerToken: "s3cret"})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }() // samples the lag for the charts
	defer func() { stop(); <-ran }()

	admin := http.NewServeMux()
	admin.Handle("/strata/", http.StripPrefix("/strata", srv))

	for _, token := range []string{"", "s3cret"} {
		req := httptest.NewRequest(http.MethodGet, "/strata/", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, req)
		fmt.Println(rec.Code, strings.Contains(rec.Body.String(), `href="/strata/dead-letters"`))
	}
	// Output:
	// 401 false
	// 200 true
}
