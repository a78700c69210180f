package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/natstest"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/internal/tlstest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/natsjs"
)

// TestRelayTLS runs the relay with TLS on both of its sides: it reads a
// private PostgreSQL cluster that takes connections only over TLS
// (sslmode=verify-full, logging in with a client certificate) and
// publishes to a private nats-server that requires TLS with a client
// certificate and a password. Every event reaches JetStream. Then the
// relay is started with a wrong database password, and Run returns an
// error matching outbox.ErrAuth at once instead of retrying.
func TestRelayTLS(t *testing.T) {
	t.Parallel()
	pg := pgtest.StartTLS(t)
	ca := tlstest.NewCA(t, "strata test NATS CA")
	server := ca.Server(t)
	const user, password = "relay", "relay-Pa55"
	ns := natstest.Start(t, natstest.Config{CertFile: server.CertFile, KeyFile: server.KeyFile, CAFile: ca.CertFile,
		Users: []natstest.User{{Name: user, Password: password}}})
	tlsCfg := ca.ClientConfig("", ca.Client(t, "relay"))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, pg.CertURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := eventstore.New(pool, &eventstore.Config{Schema: pgtest.TLSSchema})
	const streams, perStream = 3, 4
	for k := range streams {
		for i := range perStream {
			e := eventstore.NewEvent{Type: "Secured", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}
			if _, err := store.Append(ctx, fmt.Sprintf("secure-%d", k), eventstore.Any, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	nc, err := nats.Connect(ns.URL, nats.Secure(tlsCfg), nats.UserInfo(user, password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "secure", Subjects: []string{"secure"}, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := natsjs.NewPublisher(ns.URL, &natsjs.Config{TLS: tlsCfg, User: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	relay := outbox.NewRelay(store, pub, &outbox.Config{Permanent: natsjs.Permanent, LeaseTTL: time.Second})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	pgtest.WaitFor(t, "every event in JetStream", time.Minute, func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == streams*perStream
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A wrong password for the database: Run stops at once.
	badPool, err := pgxpool.New(ctx, pg.PasswordURL("wrong"))
	if err != nil {
		t.Fatal(err)
	}
	defer badPool.Close()
	bad := outbox.NewRelay(eventstore.New(badPool, &eventstore.Config{Schema: pgtest.TLSSchema}), pub, &outbox.Config{Name: "refused"})
	start := time.Now()
	err = bad.Run(ctx)
	if !errors.Is(err, outbox.ErrAuth) || time.Since(start) > 10*time.Second {
		t.Fatalf("Run with a wrong database password: %v after %s; want outbox.ErrAuth at once", err, time.Since(start))
	}
	t.Logf("wrong database password: %v", err)
}
