package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/strata-go/strata/internal/rabbittest"
	"github.com/strata-go/strata/internal/tlstest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/rabbitmq"
)

const (
	rabbitUser     = "relay"
	rabbitPassword = "amqp-Pa55word"
)

// TestAMQPS starts a private RabbitMQ node whose only listener is AMQPS,
// requiring a client certificate of the test's CA and a password;
// publishes through NewPublisher with Config.TLS and reads the messages
// back over the same kind of connection. Then it connects with each thing
// that can be wrong and expects NewPublisher to return at once an error
// matching outbox.ErrAuth, never showing the password.
func TestAMQPS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "strata test RabbitMQ CA")
	server := ca.Server(t)
	node := rabbittest.Start(t, rabbittest.Config{CertFile: server.CertFile, KeyFile: server.KeyFile, CAFile: ca.CertFile, User: rabbitUser, Password: rabbitPassword})
	client := ca.Client(t, "relay")
	good := ca.ClientConfig("", client)
	url := node.URL(rabbitUser, rabbitPassword)

	conn, err := amqp091.DialTLS(url, good)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if st := conn.ConnectionState(); !st.HandshakeComplete || len(st.PeerCertificates) == 0 {
		t.Fatal("the connection is not TLS")
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// The durable queue (what a subscriber declares) must exist before
	// publishing to the default exchange.
	const topic = "secure"
	if _, err := ch.QueueDeclare(topic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	pub, err := rabbitmq.NewPublisher(url, &rabbitmq.Config{TLS: good})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 3 {
		if err := pub.Publish(topic, message.NewMessage(fmt.Sprintf("id-%d", i), []byte(`{}`))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]bool{}
	for len(got) < 3 && ctx.Err() == nil {
		d, ok, err := ch.Get(topic, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		got[d.Headers["_watermill_message_uuid"].(string)] = true
	}
	if len(got) != 3 {
		t.Fatalf("read back %v, want id-0..2", got)
	}

	// The subscriber over the same TLS connection reads what the
	// publisher writes.
	sub, err := rabbitmq.NewSubscriber(url, &rabbitmq.SubscriberConfig{TLS: good})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(topic, message.NewMessage("id-sub", []byte(`{}`))); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if m.UUID != "id-sub" {
			t.Fatalf("subscriber read %q, want id-sub", m.UUID)
		}
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the subscriber read nothing")
	}

	other := tlstest.NewCA(t, "another CA")
	for _, tc := range []struct {
		name, says, url string
		cfg             rabbitmq.Config
	}{
		{"wrong password", "username or password not allowed", node.URL(rabbitUser, "wrong-"+rabbitPassword), rabbitmq.Config{TLS: good}},
		{"unknown user", "username or password not allowed", node.URL("mallory", rabbitPassword), rabbitmq.Config{TLS: good}},
		{"client certificate of another CA", "tls", url, rabbitmq.Config{TLS: ca.ClientConfig("", other.Client(t, "relay"))}},
		{"no client certificate", "tls", url, rabbitmq.Config{TLS: ca.ClientConfig("", nil)}},
		{"untrusted server certificate", "certificate signed by unknown authority", url, rabbitmq.Config{TLS: other.ClientConfig("", client)}},
		{"no TLS configuration", "certificate signed by unknown authority", url, rabbitmq.Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			p, err := rabbitmq.NewPublisher(tc.url, &tc.cfg)
			if err == nil {
				p.Close()
				t.Fatal("connected")
			}
			t.Logf("%s: %v", tc.name, err)
			if !errors.Is(err, outbox.ErrAuth) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("NewPublisher: %v; want outbox.ErrAuth saying %q", err, tc.says)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("NewPublisher took %s to report the refusal", d)
			}
			if strings.Contains(err.Error(), rabbitPassword) {
				t.Fatalf("the error shows the password: %v", err)
			}
			s, err := rabbitmq.NewSubscriber(tc.url, &rabbitmq.SubscriberConfig{TLS: tc.cfg.TLS})
			if err == nil {
				s.Close()
				t.Fatal("the subscriber connected")
			}
			if !errors.Is(err, outbox.ErrAuth) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("NewSubscriber: %v; want outbox.ErrAuth saying %q", err, tc.says)
			}
		})
	}
}
