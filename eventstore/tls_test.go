package eventstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/internal/tlstest"
)

// tlsPool connects to url, closing the pool when the test ends.
func tlsPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestTLS starts a private cluster that takes TCP connections only over
// TLS (one cluster for both halves: starting one takes seconds).
func TestTLS(t *testing.T) {
	t.Parallel()
	c := pgtest.StartTLS(t)
	t.Run("accepted", func(t *testing.T) { testTLSAccepted(t, c) })
	t.Run("refused", func(t *testing.T) { testTLSRefused(t, c) })
}

// testTLSAccepted appends, reads and subscribes over TLS with
// sslmode=verify-full: once as a role that logs in with a client
// certificate, once with a password. The server's own view (pg_stat_ssl)
// confirms the connection is encrypted and, for the first role, which
// certificate it presented.
func testTLSAccepted(t *testing.T, c *pgtest.TLSCluster) {
	for _, tc := range []struct{ name, url, role string }{
		{"client certificate", c.CertURL(), pgtest.CertRole},
		{"password", c.PasswordURL(pgtest.Password), pgtest.PasswordRole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			pool := tlsPool(t, tc.url)
			var ssl bool
			var dn, user string
			err := pool.QueryRow(ctx, `SELECT s.ssl, coalesce(s.client_dn, ''), current_user FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()`).Scan(&ssl, &dn, &user)
			if err != nil {
				t.Fatal(err)
			}
			if !ssl || user != tc.role {
				t.Fatalf("connection: ssl %v as %q, want ssl as %q", ssl, user, tc.role)
			}
			if tc.role == pgtest.CertRole && !strings.Contains(dn, "CN="+pgtest.CertRole) {
				t.Fatalf("client certificate DN %q, want CN=%s", dn, pgtest.CertRole)
			}
			store := eventstore.New(pool, &eventstore.Config{Schema: pgtest.TLSSchema})
			if err := store.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			stream := "secure-" + strings.ReplaceAll(tc.name, " ", "_")
			if _, err := store.Append(ctx, stream, eventstore.NoStream, ev("Opened", `{"n":1}`), ev("Opened", `{"n":2}`)); err != nil {
				t.Fatal(err)
			}
			var got int
			for e, err := range store.ReadStream(ctx, stream, 0) {
				if err != nil {
					t.Fatal(err)
				}
				got++
				_ = e
			}
			if got != 2 {
				t.Fatalf("read %d events back, want 2", got)
			}
			sub, err := store.Subscription(eventstore.SubscriptionConfig{Name: "tls-" + tc.role, StopWhenCaughtUp: true, LeaseTTL: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			seen := 0
			err = sub.Run(ctx, func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
				for _, e := range events {
					if e.StreamID == stream {
						seen++
					}
				}
				return nil
			})
			if err != nil || seen != 2 {
				t.Fatalf("subscription: %v, saw %d of the stream's 2 events", err, seen)
			}
		})
	}
}

// testTLSRefused connects to the TLS-only cluster with each thing that
// can be wrong — a wrong password, a client certificate of another CA, no
// client certificate, a server certificate the client does not trust, no
// TLS at all — and expects Ping and a subscription's Run to return at
// once an error matching eventstore.ErrAuth that says what the server or
// the client refused, without writing anything.
func testTLSRefused(t *testing.T, c *pgtest.TLSCluster) {
	other := tlstest.NewCA(t, "another CA")
	for _, tc := range []struct{ name, url, says string }{
		{"wrong password", c.PasswordURL("not-the-password"), "password authentication failed"},
		{"client certificate of another CA", c.TLSURL(pgtest.CertRole, "", c.CA, other.Client(t, pgtest.CertRole)), "valid client certificate"},
		{"no client certificate", c.TLSURL(pgtest.CertRole, "", c.CA, nil), "valid client certificate"},
		{"untrusted server certificate", c.TLSURL(pgtest.PasswordRole, pgtest.Password, other, nil), "certificate signed by unknown authority"},
		{"no TLS", strings.Replace(c.PasswordURL(pgtest.Password), "sslmode=verify-full", "sslmode=disable", 1), "no encryption"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			store := eventstore.New(tlsPool(t, tc.url), &eventstore.Config{Schema: pgtest.TLSSchema})
			err := store.Ping(ctx)
			if !errors.Is(err, eventstore.ErrAuth) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Ping: %v; want eventstore.ErrAuth saying %q", err, tc.says)
			}
			var pgErr *pgconn.PgError
			if tc.name == "wrong password" && (!errors.As(err, &pgErr) || pgErr.Code != "28P01") {
				t.Fatalf("Ping: %v; want the server's 28P01", err)
			}
			sub, err := store.Subscription(eventstore.SubscriptionConfig{Name: "refused"})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = sub.Run(ctx, func(context.Context, pgx.Tx, []eventstore.Event) error { return nil })
			if !errors.Is(err, eventstore.ErrAuth) {
				t.Fatalf("Run: %v; want eventstore.ErrAuth", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("Run took %s to report the refusal", d)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
	// Nothing was registered by the refused runs.
	owner := tlsPool(t, c.URL)
	var n int
	if err := owner.QueryRow(context.Background(), `SELECT count(*) FROM strata.subscriptions WHERE name = 'refused'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("subscriptions after refused runs: %d (%v), want 0", n, err)
	}
}
