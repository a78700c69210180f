package failure

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrAuth matches (errors.Is) every error marked with Auth: a connection
// refused for its credentials or its TLS — a wrong password, a client
// certificate the server does not accept, a server certificate the client
// does not trust or that names another host, a server without TLS where
// TLS is required. Retrying with the same settings cannot succeed, so
// workers return it at start-up instead of retrying.
var ErrAuth = errors.New("authentication or TLS failure")

type authError struct{ err error }

func (e authError) Error() string        { return "authentication or TLS failure: " + e.err.Error() }
func (e authError) Unwrap() []error      { return []error{e.err, ErrAuth} }
func (e authError) Is(target error) bool { return target == ErrAuth }

// Auth marks err with ErrAuth when IsAuth(err) or extra(err) (a broker's
// own authentication errors) holds, and returns it unchanged otherwise.
// Auth(nil) is nil.
func Auth(err error, extra func(error) bool) error {
	if err == nil || errors.Is(err, ErrAuth) {
		return err
	}
	if IsAuth(err) || (extra != nil && extra(err)) {
		return authError{err}
	}
	return err
}

// IsAuth reports the authentication and TLS errors every client shares:
// PostgreSQL's class 28 (invalid authorization: a wrong password, no
// pg_hba.conf entry, a rejected certificate), a server certificate that
// does not verify, a TLS alert from a server that refused the client's
// certificate, a peer that does not speak TLS, and pgx's refusal when the
// server has TLS off.
func IsAuth(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "28")
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		alert            tls.AlertError
		header           tls.RecordHeaderError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verification) || errors.As(err, &alert) || errors.As(err, &header) {
		return true
	}
	// The server's alert reaches a TLS 1.3 client only on its first read,
	// as a *net.OpError whose message names the alert; pgconn reports a
	// server with TLS off in words.
	msg := err.Error()
	return strings.Contains(msg, "remote error: tls:") || strings.Contains(msg, "server refused TLS connection")
}
