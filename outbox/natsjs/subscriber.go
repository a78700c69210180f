package natsjs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// SubscriberConfig configures a subscriber. Durable is required; every
// other field's zero value means its default.
type SubscriberConfig struct {
	// Durable names the consumer group: the JetStream durable consumer of
	// each topic is Durable + "_" + the topic (characters that consumer
	// names refuse become '_'), and every process subscribing with the
	// same Durable shares it (a queue group of that name), each message
	// going to one of them. Its acknowledged position survives restarts.
	// Required; letters, digits, '-' and '_'.
	Durable string
	// SubjectPerStream must match the publisher's Config.SubjectPerStream:
	// when set, a topic's subject is "topic.>", one token per stream.
	// Default false.
	SubjectPerStream bool
	// AutoProvision creates a missing JetStream stream named after the
	// topic, capturing its subject (or "topic.>" with SubjectPerStream),
	// when Subscribe is called. Topics must then be valid stream names.
	// Default false: the stream must exist (created by an operator, or by
	// a publisher with Config.AutoProvision).
	AutoProvision bool
	// MaxAckPending is how many messages the consumer group may hold
	// unacknowledged at once. Default 1: each message waits for the one
	// before it to be acknowledged, so every stream's events are handled
	// in order, also across a nack (the nacked message comes again before
	// the next one). Above 1, messages are handled concurrently and a
	// redelivery may come after later messages of its stream.
	MaxAckPending int
	// AckWait is how long JetStream waits for an acknowledgement before
	// it delivers the message again. Default 30s.
	AckWait time.Duration
	// TLS, User, Password, CredentialsFile and NKeySeedFile are the
	// connection's TLS configuration and credentials, as in the
	// publisher's Config. Default: none.
	TLS                                           *tls.Config
	User, Password, CredentialsFile, NKeySeedFile string
	// NatsOptions are passed to nats.Connect after the defaults, which
	// reconnect forever every 250ms, and after the options of the fields
	// above.
	NatsOptions []nats.Option
	// Logger is Watermill's logger. Default watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// ErrNoDurable is returned by NewSubscriber without a durable name.
var ErrNoDurable = errors.New("natsjs: subscriber needs a durable name (SubscriberConfig.Durable)")

// SubscriberConfigFor returns the watermill-nats configuration
// NewSubscriber uses, for callers that adjust it further: the same
// Marshaler as the publisher (UUID and metadata in headers), a durable
// consumer per topic shared by a queue group, explicit acknowledgements,
// delivery from the start of the stream.
func SubscriberConfigFor(url string, cfg SubscriberConfig) wmnats.SubscriberConfig {
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = 1
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	opts := append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, securityOptions(cfg.security())...)
	opts = append(opts, cfg.NatsOptions...)
	sc := wmnats.SubscriberConfig{
		URL:              url,
		QueueGroupPrefix: cfg.Durable,
		SubscribersCount: 1,
		AckWaitTimeout:   cfg.AckWait,
		CloseTimeout:     5 * time.Second,
		NatsOptions:      opts,
		Unmarshaler:      &Marshaler{SubjectPerStream: cfg.SubjectPerStream},
		JetStream: wmnats.JetStreamConfig{
			AutoProvision: cfg.AutoProvision,
			DurablePrefix: cfg.Durable,
			DurableCalculator: func(durable, subject string) string {
				return durable + "_" + consumerToken(strings.TrimSuffix(subject, ".>"))
			},
			SubscribeOptions: []nats.SubOpt{
				nats.DeliverAll(), nats.AckExplicit(), nats.ManualAck(),
				nats.MaxAckPending(cfg.MaxAckPending), nats.AckWait(cfg.AckWait),
			},
		},
	}
	if cfg.SubjectPerStream {
		sc.SubjectCalculator = func(queueGroupPrefix, topic string) *wmnats.SubjectDetail {
			return &wmnats.SubjectDetail{Primary: topic + ".>", QueueGroup: queueGroupPrefix}
		}
	}
	return sc
}

// Subscriber is a watermill-nats JetStream subscriber that creates the
// durable consumer of each topic before subscribing (and the JetStream
// stream, with SubscriberConfig.AutoProvision). A consumer that nats.go
// creates itself is deleted when the subscription ends, which would
// forget the group's position at every restart; one created here stays.
type Subscriber struct {
	*wmnats.Subscriber
	nc  *nats.Conn
	js  nats.JetStreamContext
	cfg SubscriberConfig
	wm  wmnats.SubscriberConfig
}

// NewSubscriber connects to the NATS server at url and returns a
// JetStream subscriber that reads what NewPublisher wrote: the event ID
// as the message UUID, the metadata, the payload. Wrap its handler with
// outbox.Deduplicate, since delivery is at least once. A server that
// refuses the credentials or the TLS handshake gives an error matching
// outbox.ErrAuth at once.
func NewSubscriber(url string, cfg *SubscriberConfig) (*Subscriber, error) {
	var c SubscriberConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Durable == "" {
		return nil, ErrNoDurable
	}
	if strings.ContainsFunc(c.Durable, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) {
		return nil, fmt.Errorf("natsjs: durable name %q: use letters, digits, '-' and '_'", c.Durable)
	}
	var logger watermill.LoggerAdapter = watermill.NopLogger{}
	if c.Logger != nil {
		logger = c.Logger
	}
	wm := SubscriberConfigFor(url, c)
	nc, err := nats.Connect(url, wm.NatsOptions...)
	if err != nil {
		return nil, fmt.Errorf("natsjs: connect to %s: %w", url, connectError(url, c.security(), err))
	}
	js, err := nc.JetStream()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	sub, err := wmnats.NewSubscriberWithNatsConn(nc, wm.GetSubscriberSubscriptionConfig(), logger)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Subscriber{Subscriber: sub, nc: nc, js: js, cfg: c, wm: wm}, nil
}

// Subscribe creates the topic's durable consumer if it is missing (and
// its stream, with AutoProvision), then subscribes to it.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := s.provision(topic); err != nil {
		return nil, err
	}
	return s.Subscriber.Subscribe(ctx, topic)
}

// provision creates what Subscribe needs on the server.
func (s *Subscriber) provision(topic string) error {
	subject := s.wm.SubjectCalculator
	detail := wmnats.DefaultSubjectCalculator(s.cfg.Durable, topic)
	if subject != nil {
		detail = subject(s.cfg.Durable, topic)
	}
	stream, err := s.js.StreamNameBySubject(detail.Primary)
	if errors.Is(err, nats.ErrNoMatchingStream) && s.cfg.AutoProvision {
		_, err = s.js.AddStream(&nats.StreamConfig{Name: topic, Subjects: detail.All(), Storage: nats.FileStorage})
		stream = topic
	}
	if err != nil {
		return fmt.Errorf("natsjs: stream of subject %q: %w", detail.Primary, err)
	}
	durable := s.wm.JetStream.CalculateDurableName(detail.Primary)
	if _, err := s.js.ConsumerInfo(stream, durable); err == nil {
		return nil
	} else if !errors.Is(err, nats.ErrConsumerNotFound) {
		return fmt.Errorf("natsjs: consumer %q of stream %q: %w", durable, stream, err)
	}
	_, err = s.js.AddConsumer(stream, &nats.ConsumerConfig{
		Durable:        durable,
		DeliverSubject: nats.NewInbox(),
		DeliverGroup:   detail.QueueGroup,
		DeliverPolicy:  nats.DeliverAllPolicy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        s.wm.AckWaitTimeout,
		MaxAckPending:  max(s.cfg.MaxAckPending, 1),
		FilterSubject:  detail.Primary,
	})
	if err != nil && !errors.Is(err, nats.ErrConsumerNameAlreadyInUse) {
		return fmt.Errorf("natsjs: create consumer %q of stream %q: %w", durable, stream, err)
	}
	return nil
}

// Close stops the subscriptions and closes the connection.
func (s *Subscriber) Close() error {
	err := s.Subscriber.Close()
	s.nc.Close()
	return err
}

// consumerToken makes s usable in a consumer name: '.', '*', '>', white
// space and control characters, and path separators become '_'.
func consumerToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f || r == '/' || r == '\\':
			return '_'
		}
		return r
	}, s)
}
