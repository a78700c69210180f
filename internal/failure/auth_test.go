package failure_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/strata-go/strata/internal/failure"
)

// TestAuth classifies refused logins and TLS failures as ErrAuth, and
// leaves outages and other errors alone.
func TestAuth(t *testing.T) {
	for _, err := range []error{
		&pgconn.PgError{Code: "28P01", Message: "password authentication failed"},
		fmt.Errorf("connect: %w", &pgconn.PgError{Code: "28000", Message: "no pg_hba.conf entry"}),
		x509.UnknownAuthorityError{},
		x509.HostnameError{Host: "db.example.com", Certificate: &x509.Certificate{}},
		&tls.CertificateVerificationError{Err: errors.New("x")},
		tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"},
		&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")},
		errors.New("server refused TLS connection"),
	} {
		if !failure.IsAuth(err) || !errors.Is(failure.Auth(err, nil), failure.ErrAuth) {
			t.Errorf("%v (%T): not an authentication failure", err, err)
		}
		if marked := failure.Auth(err, nil); !errors.Is(marked, err) && !errors.As(marked, new(*pgconn.PgError)) {
			t.Errorf("%v: the marked error hides the original", err)
		}
	}
	for _, err := range []error{
		nil, io.EOF, &pgconn.PgError{Code: "08006"}, &pgconn.PgError{Code: "57P01"},
		&net.OpError{Op: "dial", Err: errors.New("connect: connection refused")}, errors.New("boom"),
	} {
		if failure.IsAuth(err) || errors.Is(failure.Auth(err, nil), failure.ErrAuth) {
			t.Errorf("%v: called an authentication failure", err)
		}
	}
	brokerRefusal := errors.New("broker: not authorized")
	if !errors.Is(failure.Auth(brokerRefusal, func(err error) bool { return err == brokerRefusal }), failure.ErrAuth) {
		t.Error("a broker's own refusal is not marked")
	}
}
