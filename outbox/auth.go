package outbox

import "github.com/strata-go/strata/internal/failure"

// ErrAuth is matched (errors.Is) by the errors of a connection refused
// for its credentials or its TLS: Relay.Run's when the database refuses
// them (it is eventstore.ErrAuth), and the publisher constructors' of
// the natsjs, rabbitmq and kafka packages when the broker does (a wrong
// password or SASL secret, a client certificate the broker does not
// accept, a broker certificate that does not verify). No retry can cure
// it, so nothing retries it.
var ErrAuth = failure.ErrAuth
