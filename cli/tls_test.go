package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/internal/tlstest"
)

// TestTLS runs the strata command against a private cluster that takes
// connections only over TLS, with --database-url in sslmode=verify-full:
// as a role logging in with a client certificate and as one with a
// password. Then with a wrong password, a client certificate of another
// CA and an untrusted server certificate: exit 1 with an error that says
// it is about authentication or TLS, and never the password.
func TestTLS(t *testing.T) {
	t.Parallel()
	c := pgtest.StartTLS(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, c.CertURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := eventstore.New(pool, &eventstore.Config{Schema: pgtest.TLSSchema})
	if _, err := store.Append(ctx, "secure-1", eventstore.NoStream, ev("Opened", `{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	secrets := []string{pgtest.Password}
	for _, u := range []string{c.CertURL(), c.PasswordURL(pgtest.Password)} {
		r := want(t, run(t, cmdEnv(), secrets, "--database-url", u, "--schema", pgtest.TLSSchema, "stream", "show", "secure-1"), cli.ExitOK)
		if !strings.Contains(r.stdout, "Opened") {
			t.Fatalf("stream show over TLS printed no event:\n%s", r)
		}
		r = run(t, cmdEnv("DATABASE_URL="+u), secrets, "--schema", pgtest.TLSSchema, "status")
		if r.code != cli.ExitOK && r.code != cli.ExitProblems {
			t.Fatalf("status over TLS: %s", r)
		}
	}
	other := tlstest.NewCA(t, "another CA")
	for _, tc := range []struct{ name, url, says string }{
		{"wrong password", c.PasswordURL("wrong-" + pgtest.Password), "password authentication failed"},
		{"client certificate of another CA", c.TLSURL(pgtest.CertRole, "", c.CA, other.Client(t, pgtest.CertRole)), "certificate"},
		{"untrusted server certificate", c.TLSURL(pgtest.PasswordRole, pgtest.Password, other, nil), "certificate signed by unknown authority"},
	} {
		r := run(t, cmdEnv(), secrets, "--database-url", tc.url, "--schema", pgtest.TLSSchema, "stream", "show", "secure-1")
		if r.code != cli.ExitError || !strings.Contains(r.stderr, "authentication or TLS failure") || !strings.Contains(r.stderr, tc.says) {
			t.Fatalf("%s: want exit 1 saying %q, got %s", tc.name, tc.says, r)
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(r.stderr))
	}
}
