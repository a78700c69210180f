package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/tlstest"
	"github.com/strata-go/strata/migrations"
)

// TLS roles of a TLSCluster: CertRole logs in with a client certificate
// only, PasswordRole with a password (SCRAM-SHA-256) only, both over TLS.
const (
	CertRole     = "strata_cert"
	PasswordRole = "strata_pw"
	// Password is PasswordRole's password.
	Password = "s3cret-Pa55"
	// TLSSchema is the migrated schema of a TLSCluster, on which both
	// roles have migrations.GrantApplication's privileges.
	TLSSchema = "strata"
)

// TLSCluster is a private cluster that accepts TCP connections only over
// TLS (hostssl) and only for two least-privilege roles: CertRole by
// client certificate, PasswordRole by password. Its CA, server and client
// certificates are throwaway ones made for the test.
type TLSCluster struct {
	*Cluster
	// CA issued the server's certificate and Client; the server trusts
	// client certificates of this CA only.
	CA *tlstest.CA
	// Client is CertRole's client certificate.
	Client *tlstest.Pair
}

// StartTLS starts a TLSCluster (see StartClusterWith for its lifetime),
// with Strata's migrations applied in TLSSchema.
func StartTLS(tb testing.TB) *TLSCluster {
	tb.Helper()
	ca := tlstest.NewCA(tb, "strata test postgres CA")
	server := ca.Server(tb)
	hba := fmt.Sprintf("hostssl all %s 127.0.0.1/32 cert\nhostssl all %s 127.0.0.1/32 scram-sha-256\nhost all all 0.0.0.0/0 reject", CertRole, PasswordRole)
	c := StartClusterWith(tb, &ClusterConfig{
		SSL: &ClusterSSL{CertFile: server.CertFile, KeyFile: server.KeyFile, CAFile: ca.CertFile},
		HBA: hba,
		Setup: []string{
			"SET password_encryption = 'scram-sha-256'",
			"CREATE ROLE " + CertRole + " LOGIN",
			"CREATE ROLE " + PasswordRole + " LOGIN PASSWORD '" + Password + "'",
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, c.URL)
	if err != nil {
		tb.Fatal(err)
	}
	defer pool.Close()
	if err := migrations.Apply(ctx, pool, TLSSchema); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	for _, role := range []string{CertRole, PasswordRole} {
		if err := migrations.GrantApplication(ctx, pool, TLSSchema, role); err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
	}
	return &TLSCluster{Cluster: c, CA: ca, Client: ca.Client(tb, CertRole)}
}

// CertURL is the connection string of CertRole with sslmode=verify-full,
// the cluster's CA as root and the client certificate Client.
func (c *TLSCluster) CertURL() string {
	return c.TLSURL(CertRole, "", c.CA, c.Client)
}

// PasswordURL is the connection string of PasswordRole with password pw
// and sslmode=verify-full.
func (c *TLSCluster) PasswordURL(pw string) string {
	return c.TLSURL(PasswordRole, pw, c.CA, nil)
}

// TLSURL is a connection string over TCP with sslmode=verify-full for
// user (and password, if not empty), trusting root's certificate and
// presenting client's (if not nil).
func (c *TLSCluster) TLSURL(user, password string, root *tlstest.CA, client *tlstest.Pair) string {
	u := &url.URL{Scheme: "postgres", Host: fmt.Sprintf("%s:%d", c.Host(), c.Port()), Path: "/postgres"}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {root.CertFile}, "connect_timeout": {"10"}}
	if client != nil {
		q.Set("sslcert", client.CertFile)
		q.Set("sslkey", client.KeyFile)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
