package natsjs_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/strata-go/strata/internal/natstest"
	"github.com/strata-go/strata/internal/tlstest"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/natsjs"
)

const (
	natsUser     = "relay"
	natsPassword = "n4ts-Pa55word"
)

// secureNATS is a private nats-server that requires TLS with a client
// certificate of its CA and a known user: one with a password, one with
// an NKey.
type secureNATS struct {
	*natstest.Server
	ca       *tlstest.CA
	client   *tlstest.Pair
	seedFile string
}

func startSecureNATS(t *testing.T) *secureNATS {
	t.Helper()
	ca := tlstest.NewCA(t, "strata test NATS CA")
	server := ca.Server(t)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	s := natstest.Start(t, natstest.Config{
		CertFile: server.CertFile, KeyFile: server.KeyFile, CAFile: ca.CertFile,
		Users: []natstest.User{{Name: natsUser, Password: natsPassword}, {NKey: pub}},
	})
	return &secureNATS{Server: s, ca: ca, client: ca.Client(t, "relay"), seedFile: seedFile}
}

// TestTLS publishes through NewPublisher to a server that requires TLS
// with client certificates and user credentials — with a password, with
// an NKey — and reads the messages back from JetStream; then connects
// with each thing that can be wrong and expects NewPublisher to return at
// once an error matching outbox.ErrAuth.
func TestTLS(t *testing.T) {
	t.Parallel()
	s := startSecureNATS(t)
	good := s.ca.ClientConfig("", s.client)
	for _, tc := range []struct {
		name string
		cfg  natsjs.Config
	}{
		{"password", natsjs.Config{TLS: good, User: natsUser, Password: natsPassword}},
		{"nkey", natsjs.Config{TLS: good, NKeySeedFile: s.seedFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "secure_" + tc.name
			cfg := tc.cfg
			cfg.AutoProvision = true
			pub, err := natsjs.NewPublisher(s.URL, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			for i := range 3 {
				if err := pub.Publish(topic, message.NewMessage(fmt.Sprintf("%s-%d", tc.name, i), []byte(`{}`))); err != nil {
					t.Fatal(err)
				}
			}
			opts := []nats.Option{nats.Secure(good)}
			if tc.cfg.User != "" {
				opts = append(opts, nats.UserInfo(natsUser, natsPassword))
			} else {
				opt, err := nats.NkeyOptionFromSeed(s.seedFile)
				if err != nil {
					t.Fatal(err)
				}
				opts = append(opts, opt)
			}
			nc, err := nats.Connect(s.URL, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if !nc.TLSRequired() {
				t.Fatal("the server does not require TLS")
			}
			if cs, err := nc.TLSConnectionState(); err != nil || !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
				t.Fatalf("no TLS connection: %v", err)
			}
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := js.Stream(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil || info.State.Msgs != 3 {
				t.Fatalf("stream holds %v messages (%v), want 3", info.State.Msgs, err)
			}
		})
	}
	other := tlstest.NewCA(t, "another CA")
	for _, tc := range []struct {
		name, says string
		url        string
		cfg        natsjs.Config
	}{
		{"wrong password", "authorization violation", s.URL, natsjs.Config{TLS: good, User: natsUser, Password: "wrong"}},
		{"no credentials", "authorization violation", s.URL, natsjs.Config{TLS: good}},
		{"client certificate of another CA", "tls", s.URL, natsjs.Config{TLS: s.ca.ClientConfig("", other.Client(t, "relay")), User: natsUser, Password: natsPassword}},
		{"no client certificate", "tls", s.URL, natsjs.Config{TLS: s.ca.ClientConfig("", nil), User: natsUser, Password: natsPassword}},
		{"untrusted server certificate", "certificate signed by unknown authority", s.URL, natsjs.Config{TLS: other.ClientConfig("", s.client), User: natsUser, Password: natsPassword}},
		{"wrong server name", "certificate is valid for", s.URL, natsjs.Config{TLS: s.ca.ClientConfig("nats.example.com", s.client), User: natsUser, Password: natsPassword}},
		// nats.go upgrades to the TLS the server requires, verified
		// against the system's roots, which do not know the test's CA.
		{"no TLS configuration", "certificate signed by unknown authority", strings.Replace(s.URL, "tls://", "nats://", 1), natsjs.Config{User: natsUser, Password: natsPassword}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			pub, err := natsjs.NewPublisher(tc.url, &tc.cfg)
			if err == nil {
				pub.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, outbox.ErrAuth) || !strings.Contains(strings.ToLower(err.Error()), tc.says) {
				t.Fatalf("NewPublisher: %v; want outbox.ErrAuth saying %q", err, tc.says)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("NewPublisher took %s to report the refusal", d)
			}
			if strings.Contains(err.Error(), natsPassword) {
				t.Fatalf("the error shows the password: %v", err)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
}

// TestConfigString shows a configuration without its secrets.
func TestConfigString(t *testing.T) {
	cfg := &natsjs.Config{TLS: &tls.Config{}, User: "relay", Password: natsPassword, NKeySeedFile: "/etc/strata/user.nk"}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", *cfg), fmt.Sprintf("%v", cfg)} {
		if strings.Contains(s, natsPassword) || !strings.Contains(s, "relay") || !strings.Contains(s, "user.nk") {
			t.Errorf("configuration printed as %s", s)
		}
	}
}

// TestSubscriberTLS reads, through NewSubscriber, what NewPublisher wrote
// to a server that requires TLS with client certificates and user
// credentials; then expects NewSubscriber to refuse at once, with an
// error matching outbox.ErrAuth, each thing that can be wrong.
func TestSubscriberTLS(t *testing.T) {
	t.Parallel()
	s := startSecureNATS(t)
	good := s.ca.ClientConfig("", s.client)
	const topic = "secure_sub"
	pub, err := natsjs.NewPublisher(s.URL, &natsjs.Config{TLS: good, User: natsUser, Password: natsPassword, AutoProvision: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 3 {
		if err := pub.Publish(topic, message.NewMessage(fmt.Sprintf("sub-%d", i), []byte(`{}`))); err != nil {
			t.Fatal(err)
		}
	}
	for _, cfg := range []natsjs.SubscriberConfig{
		{Durable: "by_password", TLS: good, User: natsUser, Password: natsPassword},
		{Durable: "by_nkey", TLS: good, NKeySeedFile: s.seedFile},
	} {
		t.Run(cfg.Durable, func(t *testing.T) {
			sub, err := natsjs.NewSubscriber(s.URL, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			msgs, err := sub.Subscribe(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				select {
				case m := <-msgs:
					if want := fmt.Sprintf("sub-%d", i); m.UUID != want {
						t.Fatalf("message %d is %q, want %q", i, m.UUID, want)
					}
					m.Ack()
				case <-ctx.Done():
					t.Fatalf("%d of 3 messages read", i)
				}
			}
		})
	}
	other := tlstest.NewCA(t, "another CA")
	for _, tc := range []struct {
		name, says string
		cfg        natsjs.SubscriberConfig
	}{
		{"wrong password", "authorization violation", natsjs.SubscriberConfig{TLS: good, User: natsUser, Password: "wrong"}},
		{"no credentials", "authorization violation", natsjs.SubscriberConfig{TLS: good}},
		{"no client certificate", "tls", natsjs.SubscriberConfig{TLS: s.ca.ClientConfig("", nil), User: natsUser, Password: natsPassword}},
		{"untrusted server certificate", "certificate signed by unknown authority", natsjs.SubscriberConfig{TLS: other.ClientConfig("", s.client), User: natsUser, Password: natsPassword}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Durable = "refused"
			start := time.Now()
			sub, err := natsjs.NewSubscriber(s.URL, &tc.cfg)
			if err == nil {
				sub.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, outbox.ErrAuth) || !strings.Contains(strings.ToLower(err.Error()), tc.says) {
				t.Fatalf("NewSubscriber: %v; want outbox.ErrAuth saying %q", err, tc.says)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("NewSubscriber took %s to report the refusal", d)
			}
			if strings.Contains(err.Error(), natsPassword) || strings.Contains(fmt.Sprint(tc.cfg), natsPassword) {
				t.Fatalf("the error or the configuration shows the password: %v", err)
			}
		})
	}
}
