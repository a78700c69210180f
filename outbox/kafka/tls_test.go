package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/tlstest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/kafka"
)

// secureKafka is a kfake cluster that takes only TLS connections with a
// client certificate of its CA, and SASL users of each mechanism.
type secureKafka struct {
	cluster *kfake.Cluster
	ca      *tlstest.CA
	client  *tlstest.Pair
}

var kafkaUsers = map[sarama.SASLMechanism][2]string{
	kafka.PLAIN:       {"relay-plain", "plain-Pa55"},
	kafka.SCRAMSHA256: {"relay-256", "scram256-Pa55"},
	kafka.SCRAMSHA512: {"relay-512", "scram512-Pa55"},
}

func startSecureKafka(t *testing.T) *secureKafka {
	t.Helper()
	ca := tlstest.NewCA(t, "strata test Kafka CA")
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.TLS(ca.ServerConfig(ca.Server(t))), kfake.EnableSASL(), kfake.SeedTopics(3, "secure")}
	for m, u := range kafkaUsers {
		opts = append(opts, kfake.Superuser(string(m), u[0], u[1]))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &secureKafka{cluster: c, ca: ca, client: ca.Client(t, "relay")}
}

// TestTLSSASL publishes relayed messages through NewPublisher over TLS
// (verifying the broker's certificate and presenting a client
// certificate) with SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and reads
// them back with another Kafka client over the same kind of connection:
// every message is there, keyed by its stream. Then it connects with each
// thing that can be wrong and expects NewPublisher to return an error
// matching outbox.ErrAuth, never showing the password.
func TestTLSSASL(t *testing.T) {
	t.Parallel()
	k := startSecureKafka(t)
	good := k.ca.ClientConfig("", k.client)
	sent := 0
	for _, m := range []sarama.SASLMechanism{kafka.PLAIN, kafka.SCRAMSHA256, kafka.SCRAMSHA512} {
		t.Run(string(m), func(t *testing.T) {
			u := kafkaUsers[m]
			pub, err := kafka.NewPublisher(k.cluster.ListenAddrs(), &kafka.Config{TLS: good, SASL: &kafka.SASL{Mechanism: m, User: u[0], Password: u[1]}})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			for i := range 3 {
				e := eventstore.Event{ID: uuid.New(), StreamID: fmt.Sprintf("secure-%s", m), Version: int64(i + 1), Type: "Secured", Data: []byte(`{}`)}
				if err := pub.Publish("secure", outbox.NewMessage(e)); err != nil {
					t.Fatal(err)
				}
				sent++
			}
		})
	}
	// Read everything back over TLS with SASL PLAIN.
	plainUser := kafkaUsers[kafka.PLAIN]
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.cluster.ListenAddrs()...), kgo.DialTLSConfig(good),
		kgo.SASL(plain.Auth{User: plainUser[0], Pass: plainUser[1]}.AsMechanism()),
		kgo.ConsumeTopics("secure"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	perKey := map[string]int{}
	for got := 0; got < sent; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d messages back: %v", got, sent, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			perKey[string(r.Key)]++
		})
	}
	for _, m := range []sarama.SASLMechanism{kafka.PLAIN, kafka.SCRAMSHA256, kafka.SCRAMSHA512} {
		if n := perKey["secure-"+string(m)]; n != 3 {
			t.Errorf("%s: %d messages keyed by their stream, want 3 (%v)", m, n, perKey)
		}
	}

	other := tlstest.NewCA(t, "another CA")
	scram := kafkaUsers[kafka.SCRAMSHA256]
	for _, tc := range []struct {
		name, says string
		cfg        kafka.Config
	}{
		{"wrong PLAIN password", "SASL", kafka.Config{TLS: good, SASL: &kafka.SASL{Mechanism: kafka.PLAIN, User: plainUser[0], Password: "wrong-" + plainUser[1]}}},
		{"wrong SCRAM password", "SASL", kafka.Config{TLS: good, SASL: &kafka.SASL{Mechanism: kafka.SCRAMSHA256, User: scram[0], Password: "wrong-" + scram[1]}}},
		{"SCRAM user under another mechanism", "SASL", kafka.Config{TLS: good, SASL: &kafka.SASL{Mechanism: kafka.SCRAMSHA512, User: scram[0], Password: scram[1]}}},
		{"no SASL", "", kafka.Config{TLS: good}},
		{"client certificate of another CA", "tls", kafka.Config{TLS: k.ca.ClientConfig("", other.Client(t, "relay")), SASL: &kafka.SASL{Mechanism: kafka.PLAIN, User: plainUser[0], Password: plainUser[1]}}},
		{"untrusted broker certificate", "certificate signed by unknown authority", kafka.Config{TLS: other.ClientConfig("", k.client), SASL: &kafka.SASL{Mechanism: kafka.PLAIN, User: plainUser[0], Password: plainUser[1]}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Sarama = kafka.SaramaConfig()
			cfg.Sarama.Metadata.Retry.Max = 0
			start := time.Now()
			pub, err := kafka.NewPublisher(k.cluster.ListenAddrs(), &cfg)
			if err == nil {
				pub.Close()
				t.Fatal("connected")
			}
			t.Logf("%s: %v", tc.name, err)
			if !errors.Is(err, outbox.ErrAuth) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("NewPublisher: %v; want outbox.ErrAuth saying %q", err, tc.says)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("NewPublisher took %s to report the refusal", d)
			}
			for _, u := range kafkaUsers {
				if strings.Contains(err.Error(), u[1]) {
					t.Fatalf("the error shows a password: %v", err)
				}
			}
		})
	}
}

// TestSASLChecked refuses SASL settings no broker can accept before
// connecting, and never prints the password.
func TestSASLChecked(t *testing.T) {
	for _, s := range []*kafka.SASL{
		{Mechanism: "GSSAPI-ish", User: "u", Password: "p"},
		{Mechanism: kafka.PLAIN, User: "", Password: "p"},
		{Mechanism: kafka.SCRAMSHA256, User: "u"},
	} {
		if _, err := kafka.NewPublisher([]string{"127.0.0.1:1"}, &kafka.Config{SASL: s}); err == nil || errors.Is(err, outbox.ErrAuth) {
			t.Errorf("%v: %v, want a configuration error", s, err)
		}
	}
	if s := fmt.Sprint(kafka.SASL{Mechanism: kafka.PLAIN, User: "relay", Password: "hunter2"}); strings.Contains(s, "hunter2") || !strings.Contains(s, "relay") {
		t.Errorf("SASL printed as %s", s)
	}
}

// TestSubscriberTLSSASL reads, through NewSubscriber over TLS with SASL
// SCRAM-SHA-512, what NewPublisher wrote; a subscriber with a wrong
// password reads nothing and its Subscribe fails with an error that
// matches outbox.ErrAuth.
func TestSubscriberTLSSASL(t *testing.T) {
	t.Parallel()
	k := startSecureKafka(t)
	good := k.ca.ClientConfig("", k.client)
	u := kafkaUsers[kafka.SCRAMSHA512]
	sasl := &kafka.SASL{Mechanism: kafka.SCRAMSHA512, User: u[0], Password: u[1]}
	pub, err := kafka.NewPublisher(k.cluster.ListenAddrs(), &kafka.Config{TLS: good, SASL: sasl})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 3 {
		e := eventstore.Event{ID: uuid.New(), StreamID: "secure-sub", Version: int64(i + 1), Type: "Secured", Data: []byte(`{}`)}
		if err := pub.Publish("secure", outbox.NewMessage(e)); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := kafka.NewSubscriber(k.cluster.ListenAddrs(), "secure-readers", &kafka.SubscriberConfig{TLS: good, SASL: sasl})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "secure")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		select {
		case m := <-msgs:
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("read %d of 3 messages", i)
		}
	}

	if _, err := kafka.NewSubscriber(k.cluster.ListenAddrs(), "g", &kafka.SubscriberConfig{SASL: &kafka.SASL{Mechanism: "NOPE", User: "u", Password: "p"}}); err == nil {
		t.Fatal("NewSubscriber took an unknown SASL mechanism")
	}
	sc := kafka.ConsumerSaramaConfig()
	sc.Metadata.Retry.Max = 0
	bad, err := kafka.NewSubscriber(k.cluster.ListenAddrs(), "intruders", &kafka.SubscriberConfig{Sarama: sc, TLS: good,
		SASL: &kafka.SASL{Mechanism: kafka.SCRAMSHA512, User: u[0], Password: "wrong-" + u[1]}})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	start := time.Now()
	badCtx, badCancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer badCancel()
	if got, err := bad.Subscribe(badCtx, "secure"); err == nil {
		select {
		case m := <-got:
			t.Fatalf("a wrong password read message %v", m)
		case <-time.After(2 * time.Second):
			t.Fatal("Subscribe with a wrong password did not fail")
		}
	} else {
		t.Logf("wrong password: %v (after %s)", err, time.Since(start))
		if !errors.Is(err, outbox.ErrAuth) || strings.Contains(err.Error(), u[1]) {
			t.Fatalf("Subscribe: %v; want outbox.ErrAuth without the password", err)
		}
	}
}
