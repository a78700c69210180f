package eventstore

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// validText reports whether s can be stored in a Postgres text column.
func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// check refuses a filter whose partition is out of range or whose names
// cannot be sent as text.
func (f Filter) check() error {
	if f.Partitions > 1 && (f.Partition < 0 || f.Partition >= f.Partitions) {
		return fmt.Errorf("%w: filter: partition %d is not in [0, %d)", ErrInvalidArgument, f.Partition, f.Partitions)
	}
	for _, names := range [][]string{f.Categories, f.Types} {
		for _, n := range names {
			if !validText(n) {
				return fmt.Errorf("%w: filter: category or type %q is not valid UTF-8 or contains a NUL byte", ErrInvalidArgument, n)
			}
		}
	}
	return nil
}

// checkStreamArg refuses a stream ID that cannot be sent as text.
func checkStreamArg(op, streamID string) error {
	if !validText(streamID) {
		return fmt.Errorf("%w: %s %q: stream ID is not valid UTF-8 or contains a NUL byte", ErrInvalidArgument, op, streamID)
	}
	return nil
}

// checkNames refuses subscription names and stream IDs that cannot be
// sent as text.
func checkNames(op string, names ...string) error {
	for _, n := range names {
		if !validText(n) {
			return fmt.Errorf("%w: %s: name %q is not valid UTF-8 or contains a NUL byte", ErrInvalidArgument, op, n)
		}
	}
	return nil
}

// checkLimit refuses a read limit below 1.
func checkLimit(op string, limit int) error {
	if limit <= 0 {
		return fmt.Errorf("%w: %s: limit %d: want a positive limit", ErrInvalidArgument, op, limit)
	}
	return nil
}

// checkPosition refuses a position whose transaction ID is past the
// range of the log's (bigint) transaction IDs: it is no place in the log.
func checkPosition(op string, p Position) error {
	if p.TxID > math.MaxInt64 {
		return fmt.Errorf("%w: %s: position %s: transaction ID past %d", ErrInvalidArgument, op, p, int64(math.MaxInt64))
	}
	return nil
}

// firstError returns the first of errs that is not nil.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
