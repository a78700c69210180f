package eventstore

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/jackc/pgx/v5"
)

// PanicError is the error a panic in user code becomes: a subscription
// handler (and so a projection's handler, a relay's Topic or publisher),
// a subscription's OnBatch or Transient, a projection's ResetFunc. A panic
// is a handler error like any other: the subscription retries the event,
// then parks it or stops (SubscriptionConfig.OnFailure); it never takes the
// process down. The stack is logged when the panic is recovered.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the panicking goroutine's stack.
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic's value when it is an error.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// recovered turns a value recovered from a panic into a *PanicError and
// logs it, with its stack, through log (slog.Default() when nil). what
// says whose code panicked. Packages built on the store call it (through
// internal/storeview) from their deferred recover; call it only from a
// deferred function, so that the stack is the panic's.
func recovered(log *slog.Logger, what string, v any) *PanicError {
	if log == nil {
		log = slog.Default()
	}
	pe := &PanicError{Value: v, Stack: debug.Stack()}
	log.Error("strata: "+what+" panicked; handled as an error", "panic", fmt.Sprint(v), "stack", string(pe.Stack))
	return pe
}

// recovering wraps a handler so that a panic in it returns a *PanicError.
func (sub *Subscription) recovering(h Handler) Handler {
	return func(ctx context.Context, tx pgx.Tx, events []Event) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = recovered(sub.log, "subscription handler", v)
			}
		}()
		return h(ctx, tx, events)
	}
}

// safeHooks wraps the user's OnBatch and Transient so that a panic in them
// is logged instead of ending the process: a panicking OnBatch is skipped
// (its batch is committed already), a panicking Transient says false.
func safeHooks(cfg *SubscriptionConfig, log *slog.Logger) {
	if f := cfg.OnBatch; f != nil {
		cfg.OnBatch = func(b BatchInfo) {
			defer func() {
				if v := recover(); v != nil {
					recovered(log, "OnBatch", v)
				}
			}()
			f(b)
		}
	}
	if f := cfg.Transient; f != nil {
		cfg.Transient = func(err error) (transient bool) {
			defer func() {
				if v := recover(); v != nil {
					recovered(log, "Transient", v)
					transient = false
				}
			}()
			return f(err)
		}
	}
}
