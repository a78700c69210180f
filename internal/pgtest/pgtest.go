// Package pgtest gives tests a real PostgreSQL and a fresh schema each.
//
// The server comes from DATABASE_URL; where that is unset, from the local
// server at postgres://postgres@127.0.0.1:5432/test; failing that, from a
// testcontainers-go container when Docker is available. Otherwise the test
// fails with a message saying how to provide one: never a silent skip.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/strata-go/strata/migrations"
)

// LocalURL is the server tried when DATABASE_URL is unset.
const LocalURL = "postgres://postgres@127.0.0.1:5432/test"

var (
	urlOnce sync.Once
	dbURL   string
	urlErr  error
)

// URL returns the connection string of the test server, starting a
// container if that is the only way to get one.
func URL(tb testing.TB) string {
	tb.Helper()
	urlOnce.Do(func() { dbURL, urlErr = findServer() })
	if urlErr != nil {
		tb.Fatalf("pgtest: no PostgreSQL for tests: %v\n"+
			"Set DATABASE_URL to a server you can create schemas in, run one on 127.0.0.1:5432 "+
			"(user postgres, database test, trust auth), or start Docker so a container can be used.", urlErr)
	}
	return dbURL
}

func findServer() (string, error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u, ping(u)
	}
	localErr := ping(LocalURL)
	if localErr == nil {
		return LocalURL, nil
	}
	u, err := startContainer()
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL is unset; local server: %v; testcontainers: %v", localErr, err)
	}
	return u, nil
}

func ping(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

func startContainer() (u string, err error) {
	defer func() {
		// testcontainers panics in some set-ups without Docker.
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := testcontainers.NewDockerClientWithOpts(ctx); err != nil {
		return "", err
	}
	c, err := tcpostgres.Run(ctx, "postgres:15-alpine",
		tcpostgres.WithDatabase("test"), tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"),
		tcpostgres.BasicWaitStrategies())
	if err != nil {
		return "", err
	}
	return c.ConnectionString(ctx, "sslmode=disable")
}

// Config returns a pool configuration for the test server.
func Config(tb testing.TB) *pgxpool.Config {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(URL(tb))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return cfg
}

// DB is a fresh, migrated schema on the test server.
type DB struct {
	// Pool is connected to the server; its connections do not change
	// search_path, so queries name the schema.
	Pool *pgxpool.Pool
	// Schema is the schema's name, unique to the test.
	Schema string
	// URL is the server's connection string.
	URL string
}

// New creates a schema unique to tb, applies Strata's migrations to it and
// drops it when the test ends. The pool is closed then too.
func New(tb testing.TB) *DB {
	tb.Helper()
	db := NewEmpty(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := migrations.Apply(ctx, db.Pool, db.Schema); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return db
}

// NewEmpty is New without the migrations: the schema name is reserved and
// dropped at the end, but not created.
func NewEmpty(tb testing.TB) *DB {
	tb.Helper()
	cfg := Config(tb)
	cfg.MaxConns = 40
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	db := &DB{Pool: pool, Schema: schema, URL: URL(tb)}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			tb.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
		pool.Close()
	})
	return db
}

// AppPool creates a login role with only the grants of
// migrations.GrantApplication on db's schema, and returns a pool that logs
// in as that role (the local test server trusts every role; elsewhere the
// role needs a password in DATABASE_URL's form). The role is dropped and
// the pool closed when the test ends.
func (db *DB) AppPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return db.AppPoolAs(tb, "app")
}

// AppPoolAs is AppPool for a role of its own, named after db's schema and
// name: tests of two application roles sharing one schema call it with
// two names.
func (db *DB) AppPoolAs(tb testing.TB, name string) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	role := db.Schema + "_" + name
	if _, err := db.Pool.Exec(ctx, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()+` LOGIN`); err != nil {
		tb.Fatalf("pgtest: create role: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = db.Pool.Exec(ctx, `DROP OWNED BY `+pgx.Identifier{role}.Sanitize())
		_, _ = db.Pool.Exec(ctx, `DROP ROLE `+pgx.Identifier{role}.Sanitize())
	})
	if err := migrations.GrantApplication(ctx, db.Pool, db.Schema, role); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	cfg := Config(tb)
	cfg.ConnConfig.User = role
	cfg.ConnConfig.Password = ""
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("pgtest: connect as %s: %v", role, err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Example gives a runnable example (which has no testing.TB) a pool on
// the test server — DATABASE_URL, else the local server — with schema
// dropped and freshly migrated. cleanup drops the schema and closes the
// pool. It panics when no server can be reached: an example cannot run
// without one.
//
// An example's output names its schema, so the name is fixed; other test
// runs on the same server (another checkout, another package run at the
// same time) may run the same example: Example holds ExampleLock(schema)
// until cleanup, so that they take turns instead of dropping each other's
// schema.
func Example(schema string) (pool *pgxpool.Pool, cleanup func()) {
	unlock := ExampleLock(schema)
	url := serverURL()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		panic(err)
	}
	drop := `DROP SCHEMA IF EXISTS ` + pgx.Identifier{schema}.Sanitize() + ` CASCADE`
	if _, err := pool.Exec(ctx, drop); err != nil {
		panic(err)
	}
	if err := migrations.Apply(ctx, pool, schema); err != nil {
		panic(err)
	}
	return pool, func() {
		_, _ = pool.Exec(context.Background(), drop)
		pool.Close()
		unlock()
	}
}

// ExampleLock takes a session advisory lock named after an example's
// fixed schema name on its own connection to the test server, waiting
// (up to five minutes) while another process holds it; the returned
// function releases it. It panics when the server cannot be reached. A
// crashed holder's lock goes with its connection.
func ExampleLock(schema string) (unlock func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL())
	if err != nil {
		panic(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, "strata example schema "+schema); err != nil {
		_ = conn.Close(context.Background())
		panic(fmt.Errorf("pgtest: lock example schema %s: %w", schema, err))
	}
	return func() { _ = conn.Close(context.Background()) }
}

// serverURL is DATABASE_URL, else the local server.
func serverURL() string {
	if url := os.Getenv("DATABASE_URL"); url != "" {
		return url
	}
	return LocalURL
}
