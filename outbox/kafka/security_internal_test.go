package kafka

import (
	"errors"
	"fmt"
	"testing"

	"github.com/IBM/sarama"

	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/outbox"
)

// TestAuthErrorShapes classifies the errors Sarama returns for a real
// broker's refusals (which answer SaslAuthenticate with an error code
// before closing, unlike kfake) and leaves outages alone.
func TestAuthErrorShapes(t *testing.T) {
	refused := sarama.Wrap(sarama.ErrOutOfBrokers, sarama.Wrap(sarama.ErrSASLAuthenticationFailed, errors.New("Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256")))
	for _, err := range []error{
		refused,
		fmt.Errorf("cannot create Kafka producer: %w", sarama.Wrap(sarama.ErrOutOfBrokers, sarama.ErrUnsupportedSASLMechanism)),
	} {
		if !errors.Is(failure.Auth(err, isAuth), outbox.ErrAuth) {
			t.Errorf("%v: not an authentication failure", err)
		}
	}
	for _, err := range []error{
		sarama.Wrap(sarama.ErrOutOfBrokers, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")),
		sarama.ErrNotLeaderForPartition,
	} {
		if errors.Is(failure.Auth(err, isAuth), outbox.ErrAuth) {
			t.Errorf("%v: called an authentication failure", err)
		}
	}
	// A broker that is not there: no probe succeeds, the error stands.
	sc := SaramaConfig()
	sc.Metadata.Retry.Max = 0
	if _, err := NewPublisher([]string{"127.0.0.1:1"}, &Config{Sarama: sc, SASL: &SASL{Mechanism: PLAIN, User: "u", Password: "p"}}); err == nil || errors.Is(err, outbox.ErrAuth) {
		t.Errorf("no broker: %v, want an error that is not outbox.ErrAuth", err)
	}
}
