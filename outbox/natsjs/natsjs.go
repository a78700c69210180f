// Package natsjs builds Watermill publishers for NATS JetStream
// (watermill-nats/v2) that suit the outbox relay: every publish waits for
// the JetStream acknowledgement, every message carries Nats-Msg-Id = the
// event ID so the server drops re-publications within its duplicate
// window, the connection reconnects forever, and, optionally, each stream
// gets its own subject token.
//
// # Publisher
//
//	pub, err := natsjs.NewPublisher("nats://127.0.0.1:4222", nil)
//	relay := outbox.NewRelay(store, pub, &outbox.Config{Permanent: natsjs.Permanent})
//
// The JetStream streams must exist and capture the relay's subjects: by
// default one subject per topic (the event's category, "order"); with
// Config.SubjectPerStream, "order.<stream token>", so the JetStream stream
// must capture "order.>". Create them with the nats CLI (nats stream add
// order --subjects 'order.>'), with nats.go's jetstream API, or by setting
// Config.AutoProvision (or SubscriberConfig.AutoProvision).
//
// # TLS and credentials
//
//	pub, err := natsjs.NewPublisher("tls://nats.internal:4222", &natsjs.Config{
//		TLS:  &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
//		User: "relay", Password: password, // or NKeySeedFile, or CredentialsFile
//	})
//
// A refused password or certificate is an error matching outbox.ErrAuth
// from NewPublisher. Config prints without its password.
//
// # Consumers
//
// NewSubscriber reads what NewPublisher writes (the same Marshaler: event
// ID as UUID, metadata in headers). SubscriberConfig.Durable names the
// consumer group: one durable JetStream consumer per topic, created before
// subscribing so that the group's position survives restarts, shared by
// every process of the group. MaxAckPending 1 (the default) keeps each
// stream in order, also across a nack. Wrap the handler with
// outbox.Deduplicate:
//
//	sub, err := natsjs.NewSubscriber("nats://127.0.0.1:4222", &natsjs.SubscriberConfig{Durable: "billing"})
//	router.AddConsumerHandler("billing", "order", sub, handle).AddMiddleware(outbox.Deduplicate(pool, "strata", "billing"))
//
// With Config.SubjectPerStream on the publisher, set it on the subscriber
// too; AutoProvision on either side creates the JetStream stream.
package natsjs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/strata-go/strata/outbox"
)

// Config configures the publisher. The zero value (or nil) means every
// default.
type Config struct {
	// SubjectPerStream publishes each message to topic + "." + a subject
	// token made from its partition key (the stream ID; see Token), so
	// that consumers can filter or shard by stream. The JetStream stream
	// must then capture "topic.>". Default false: the subject is the topic.
	SubjectPerStream bool
	// AutoProvision creates a missing JetStream stream named after the
	// topic on publish (costing a stream lookup per Publish call). Topics
	// must then be valid stream names (no '.'). Default false.
	AutoProvision bool
	// TLS, when set, is the connection's TLS configuration (nats.Secure):
	// the CA to trust (RootCAs), the client certificate (Certificates) if
	// the server verifies clients. Default nil: TLS only if the URL's
	// scheme is tls:// or the server requires it, verified against the
	// system's roots.
	TLS *tls.Config
	// User and Password authenticate with a user of the server's
	// authorization block (nats.UserInfo); credentials in the URL work
	// too, but a URL is easier to leak into a log. Default: none.
	User, Password string
	// CredentialsFile is a decentralized-auth credentials file (a user JWT
	// and its NKey seed, made by nsc; nats.UserCredentials). Default: none.
	CredentialsFile string
	// NKeySeedFile is a file holding a user's NKey seed ("SU…"), for a
	// server whose authorization block lists that user's public NKey
	// (nats.NkeyOptionFromSeed, read when connecting). Default: none.
	NKeySeedFile string
	// NatsOptions are passed to nats.Connect after the defaults, which
	// reconnect forever every 250ms and keep 8 MB of publishes buffered
	// while reconnecting, and after the options of the fields above.
	NatsOptions []nats.Option
	// PublishOptions are passed to every JetStream publish (for example
	// nats.AckWait). Default: none (nats.go's 5s ack wait).
	PublishOptions []nats.PubOpt
	// Logger is Watermill's logger. Default watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// PublisherConfig returns the watermill-nats configuration NewPublisher
// uses, for callers that adjust it further.
func PublisherConfig(url string, cfg *Config) wmnats.PublisherConfig {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	opts := append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, securityOptions(c.security())...)
	opts = append(opts, c.NatsOptions...)
	pc := wmnats.PublisherConfig{
		URL:         url,
		NatsOptions: opts,
		Marshaler:   &Marshaler{SubjectPerStream: c.SubjectPerStream},
		JetStream: wmnats.JetStreamConfig{
			AutoProvision:  c.AutoProvision,
			TrackMsgId:     true,
			PublishOptions: c.PublishOptions,
		},
	}
	if c.SubjectPerStream {
		pc.SubjectCalculator = func(queueGroupPrefix, topic string) *wmnats.SubjectDetail {
			return &wmnats.SubjectDetail{Primary: topic + ".>", QueueGroup: queueGroupPrefix}
		}
	}
	return pc
}

// NewPublisher connects to the NATS server at url and returns a JetStream
// publisher whose Publish returns once JetStream acknowledged each message.
// A server that refuses the credentials or the TLS handshake, or a server
// certificate that does not verify, gives an error matching
// outbox.ErrAuth at once (the first connection is not retried).
func NewPublisher(url string, cfg *Config) (*wmnats.Publisher, error) {
	var logger watermill.LoggerAdapter = watermill.NopLogger{}
	if cfg != nil && cfg.Logger != nil {
		logger = cfg.Logger
	}
	pub, err := wmnats.NewPublisher(PublisherConfig(url, cfg), logger)
	if err != nil {
		var c Config
		if cfg != nil {
			c = *cfg
		}
		return nil, fmt.Errorf("natsjs: %w", connectError(url, c.security(), err))
	}
	return pub, nil
}

// Marshaler is watermill-nats's NATSMarshaler (UUID and metadata as
// headers, payload as body) that can also route by partition key. It
// implements wmnats.MarshalerUnmarshaler.
type Marshaler struct {
	// SubjectPerStream appends "." + Token(partition key) to the subject.
	SubjectPerStream bool
}

// Marshal builds the NATS message for msg on topic.
func (m *Marshaler) Marshal(topic string, msg *message.Message) (*nats.Msg, error) {
	hdr := make(nats.Header, len(msg.Metadata)+1)
	for k, v := range msg.Metadata {
		hdr.Set(k, v)
	}
	hdr.Set(wmnats.WatermillUUIDHdr, msg.UUID)
	subject := topic
	if m.SubjectPerStream {
		subject = topic + "." + Token(outbox.PartitionKey(msg))
	}
	return &nats.Msg{Subject: subject, Data: msg.Payload, Header: hdr}, nil
}

// Unmarshal reads a message written by Marshal.
func (m *Marshaler) Unmarshal(msg *nats.Msg) (*message.Message, error) {
	return (&wmnats.NATSMarshaler{}).Unmarshal(msg)
}

// Token turns a partition key into one NATS subject token: characters
// that subjects reserve ('.', '*', '>', whitespace, control characters)
// become '_'; an empty key becomes "_".
func Token(key string) string {
	if key == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f:
			return '_'
		}
		return r
	}, key)
}

// jsMessageTooLarge is JetStream's error code for a message above the
// stream's max_msg_size.
const jsMessageTooLarge nats.ErrorCode = 10054

// Permanent reports the NATS errors that retrying a message cannot cure:
// a message above the server's max payload or the stream's max message
// size, or an invalid subject. Use it as outbox.Config.Permanent.
func Permanent(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) {
		return true
	}
	var apiErr *nats.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsMessageTooLarge
}
