package failure_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/strata-go/strata/internal/failure"
)

func TestPermanentMark(t *testing.T) {
	if failure.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
	cause := errors.New("too large")
	err := fmt.Errorf("publish: %w", failure.Permanent(cause))
	if !errors.Is(err, failure.ErrPermanent) || !errors.Is(err, cause) || err.Error() != "publish: too large" {
		t.Fatalf("marked error %q: Is(ErrPermanent) %v, Is(cause) %v", err, errors.Is(err, failure.ErrPermanent), errors.Is(err, cause))
	}
}

func TestRulesOrder(t *testing.T) {
	boom := errors.New("boom")
	conn := &pgconn.PgError{Code: "08006"}
	yes := func(error) bool { return true }
	cases := []struct {
		name  string
		rules failure.Rules
		err   error
		want  bool
	}{
		{"unmatched, default permanent", failure.Rules{}, boom, false},
		{"unmatched, default transient", failure.Rules{TransientByDefault: true}, boom, true},
		{"connection error", failure.Rules{}, conn, true},
		{"EOF", failure.Rules{}, io.ErrUnexpectedEOF, true},
		{"IsTransient", failure.Rules{IsTransient: yes}, boom, true},
		{"mark beats IsTransient", failure.Rules{IsTransient: yes, TransientByDefault: true}, failure.Permanent(boom), false},
		{"mark beats connection", failure.Rules{}, failure.Permanent(conn), false},
		{"IsPermanent beats connection", failure.Rules{IsPermanent: yes}, conn, false},
		{"IsPermanent beats default", failure.Rules{IsPermanent: func(err error) bool { return err == boom }, TransientByDefault: true}, boom, false},
	}
	for _, c := range cases {
		if got := c.rules.Transient(c.err); got != c.want {
			t.Errorf("%s: Transient = %v, want %v", c.name, got, c.want)
		}
	}
	if failure.Connection(nil) {
		t.Error("Connection(nil)")
	}
}
