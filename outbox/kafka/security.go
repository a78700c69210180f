package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/strata-go/strata/internal/tlsprobe"
)

// The SASL mechanisms SASL.Mechanism may name (Sarama's names, as Kafka
// spells them).
const (
	// PLAIN sends the password to the broker; use it only over TLS.
	PLAIN = sarama.SASLTypePlaintext
	// SCRAMSHA256 proves the password without sending it (RFC 7677).
	SCRAMSHA256 = sarama.SASLTypeSCRAMSHA256
	// SCRAMSHA512 is SCRAM with SHA-512.
	SCRAMSHA512 = sarama.SASLTypeSCRAMSHA512
)

// SASL is the authentication of the producer's connections, in Kafka's
// terms: the listener's security.protocol is SASL_SSL with Config.TLS set,
// SASL_PLAINTEXT without.
type SASL struct {
	// Mechanism is PLAIN, SCRAMSHA256 or SCRAMSHA512. Required.
	Mechanism sarama.SASLMechanism
	// User and Password are the credentials. Required.
	User, Password string
}

// String describes the settings without the password.
func (s SASL) String() string {
	return fmt.Sprintf("kafka.SASL{Mechanism:%s User:%q Password:xxxxx}", s.Mechanism, s.User)
}

// secured returns a copy of sc with the connection's TLS and SASL set
// (sc itself, unchanged, when both are nil), so that a Sarama
// configuration the caller shares is not modified.
func secured(sc *sarama.Config, tlsCfg *tls.Config, sasl *SASL) *sarama.Config {
	if tlsCfg == nil && sasl == nil {
		return sc
	}
	c := *sc
	if tlsCfg != nil {
		c.Net.TLS.Enable = true
		c.Net.TLS.Config = tlsCfg
	}
	if sasl != nil {
		c.Net.SASL.Enable = true
		c.Net.SASL.Handshake = true
		c.Net.SASL.Version = sarama.SASLHandshakeV1
		c.Net.SASL.Mechanism = sasl.Mechanism
		c.Net.SASL.User = sasl.User
		c.Net.SASL.Password = sasl.Password
		switch sasl.Mechanism {
		case SCRAMSHA256:
			c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
		case SCRAMSHA512:
			c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
		}
	}
	return &c
}

// checkSASL refuses settings no broker can accept.
func checkSASL(sasl *SASL) error {
	if sasl == nil {
		return nil
	}
	switch sasl.Mechanism {
	case PLAIN, SCRAMSHA256, SCRAMSHA512:
	default:
		return fmt.Errorf("kafka: SASL mechanism %q is not one of %s, %s, %s", sasl.Mechanism, PLAIN, SCRAMSHA256, SCRAMSHA512)
	}
	if sasl.User == "" || sasl.Password == "" {
		return errors.New("kafka: SASL needs a user and a password")
	}
	return nil
}

// isAuth reports Kafka's refusals of a connection's credentials.
func isAuth(err error) bool {
	if errors.Is(err, errClosedDuringAuth) || errors.Is(err, sarama.ErrSASLAuthenticationFailed) || errors.Is(err, sarama.ErrUnsupportedSASLMechanism) ||
		errors.Is(err, sarama.ErrIllegalSASLState) {
		return true
	}
	// Sarama reports a failed SCRAM exchange, and a broker that closes the
	// connection on a failed handshake, in words.
	msg := err.Error()
	return strings.Contains(msg, "SASL") && (strings.Contains(msg, "authentication failed") || strings.Contains(msg, "SCRAM"))
}

// scramClient is Sarama's SCRAMClient over xdg-go/scram.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	client, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = client.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }

// errClosedDuringAuth explains a first connection that a broker closed
// before answering (Sarama reports it as EOF).
var errClosedDuringAuth = errors.New("the broker accepted the connection and closed it before answering: " +
	"it refused the SASL mechanism or credentials, or requires SASL")

// explain looks into a first connection that failed with EOF: a broker
// that refuses SASL credentials may close the connection instead of
// answering with an error code, and one that requires SASL closes a
// connection that does not authenticate. When a broker is reachable with
// the same TLS settings (a handshake that holds, and no alert after it),
// the EOF was such a refusal: explain returns err marked as an
// authentication failure. A TLS alert found on the way is returned
// instead; anything else leaves err as it is.
func explain(err error, brokers []string, tlsCfg *tls.Config) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	for _, addr := range brokers {
		held, tlsErr := tlsprobe.Handshake(addr, tlsCfg, nil)
		if tlsErr != nil {
			return fmt.Errorf("%w (the TLS handshake: %w)", err, tlsErr)
		}
		if held {
			return fmt.Errorf("%w (%w)", err, errClosedDuringAuth)
		}
	}
	return err
}

func cfgTLS(cfg *Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	return cfg.TLS
}
