package eventstore

import (
	"context"
	"fmt"

	"github.com/strata-go/strata/internal/failure"
)

// ErrAuth is matched (errors.Is) by the errors of Ping and of a
// subscription's Run when the database refused the connection for its
// credentials or its TLS: a wrong password, a client certificate the
// server does not accept, a server certificate that does not verify
// against sslrootcert or names another host (sslmode=verify-full), TLS
// required but off on the server. Retrying with the same settings cannot
// succeed, so Run returns it instead of retrying. The database's own
// error is wrapped too (errors.As a *pgconn.PgError with a class 28 code,
// or a crypto/x509 error).
var ErrAuth = failure.ErrAuth

// Ping takes a connection from the store's pool and checks it, so that an
// application learns at start-up, not at its first append, that it cannot
// reach the database: an authentication or TLS failure matches ErrAuth.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("eventstore: connect: %w", failure.Auth(err, nil))
	}
	return nil
}
