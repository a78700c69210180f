package eventstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/pgtx"
)

// errHandlerEndedTx is returned to a handler that commits or rolls back
// the batch's transaction, which belongs to the subscription.
var errHandlerEndedTx = errors.New("eventstore: a handler may not commit or roll back the batch's transaction (the subscription commits it with the checkpoint)")

// batchTx is the pgx.Tx a subscription's handler receives. The
// transaction begins when the handler first uses it, so that a batch whose
// handler writes nothing (a projection's filter matched none of its events,
// a no-op replay) moves its checkpoint with one autocommit statement
// instead of BEGIN, UPDATE and COMMIT. Once begun it is an ordinary
// transaction, and the checkpoint commits in it.
type batchTx struct {
	ctx  context.Context // for the uses that take no context (Conn, LargeObjects)
	pool *pgxpool.Pool
	tx   *pgtx.Tx // nil until used
	err  error    // the error of BEGIN (or of first), returned by every later use
	// first runs right after BEGIN, before the handler's first statement:
	// the checkpoint's fenced update, which locks the partition's row for
	// the whole transaction (see worker.writeBatch).
	first func(context.Context, pgx.Tx) error
}

var _ pgx.Tx = (*batchTx)(nil)

// begin returns the transaction, beginning it on first use.
func (t *batchTx) begin(ctx context.Context) (pgx.Tx, error) {
	if t.tx == nil && t.err == nil {
		tx, err := pgtx.Begin(ctx, t.pool, pgtx.Options{})
		if err == nil {
			if t.first != nil {
				if err = t.first(ctx, tx); err != nil {
					t.tx = tx
					t.end(ctx) // rolls back; ends a lost connection's server process
					t.tx = nil
				}
			}
		}
		if err != nil {
			t.err = err
			return nil, err
		}
		t.tx = tx
	}
	return t.tx, t.err
}

// started reports whether the transaction has begun.
func (t *batchTx) started() bool { return t.tx != nil }

// end rolls the transaction back if it began and was not committed.
//
// If the transaction's connection was lost, the server process behind it
// may live on, idle in the transaction with its row locks and its
// transaction ID, until a keepalive notices, hours later. The batch's
// retry would wait on those locks, and every gap-safe reader of the log on
// that transaction ID, for as long. pgtx ends that process, whether the
// loss shows at the rollback here or at the commit (writeBatch), before
// the batch is tried again (see internal/pgtx).
func (t *batchTx) end(ctx context.Context) {
	if t.tx != nil {
		_ = t.tx.Rollback(ctx)
	}
}

// Begin starts a savepoint in the batch's transaction.
func (t *batchTx) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Begin(ctx)
}

// Commit refuses: the subscription commits the batch.
func (t *batchTx) Commit(context.Context) error { return errHandlerEndedTx }

// Rollback refuses: return an error from the handler to roll the batch back.
func (t *batchTx) Rollback(context.Context) error { return errHandlerEndedTx }

// CopyFrom runs COPY FROM in the batch's transaction.
func (t *batchTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		return 0, err
	}
	return tx.CopyFrom(ctx, table, columns, src)
}

// SendBatch sends b in the batch's transaction.
func (t *batchTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	tx, err := t.begin(ctx)
	if err != nil {
		return errBatchResults{err}
	}
	return tx.SendBatch(ctx, b)
}

// LargeObjects begins the transaction if need be and returns its large
// objects. If BEGIN failed, the batch fails with that error when the
// handler returns, and the large objects returned must not be used.
func (t *batchTx) LargeObjects() pgx.LargeObjects {
	tx, err := t.begin(t.ctx)
	if err != nil {
		return pgx.LargeObjects{}
	}
	return tx.LargeObjects()
}

// Prepare prepares a statement on the batch's connection.
func (t *batchTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Prepare(ctx, name, sql)
}

// Exec runs sql in the batch's transaction.
func (t *batchTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.Exec(ctx, sql, args...)
}

// Query runs sql in the batch's transaction.
func (t *batchTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		// As pgx does, return rows that are safe to read and report err.
		return errRows{err}, err
	}
	return tx.Query(ctx, sql, args...)
}

// QueryRow runs sql in the batch's transaction.
func (t *batchTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	tx, err := t.begin(ctx)
	if err != nil {
		return errRow{err}
	}
	return tx.QueryRow(ctx, sql, args...)
}

// Conn begins the transaction if need be and returns its connection (nil
// if BEGIN failed; the batch then fails with that error).
func (t *batchTx) Conn() *pgx.Conn {
	tx, err := t.begin(t.ctx)
	if err != nil {
		return nil
	}
	return tx.Conn()
}

// errRow is a pgx.Row that failed before it was sent.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// errBatchResults are the results of a batch that could not be sent.
type errBatchResults struct{ err error }

func (r errBatchResults) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, r.err }
func (r errBatchResults) Query() (pgx.Rows, error)         { return errRows{r.err}, r.err }
func (r errBatchResults) QueryRow() pgx.Row                { return errRow{r.err} }
func (r errBatchResults) Close() error                     { return r.err }
func (r errBatchResults) Tx() pgx.Tx                       { return nil }

// errRows are the rows of a query that could not be sent.
type errRows struct{ err error }

func (r errRows) Close()                                       {}
func (r errRows) Err() error                                   { return r.err }
func (r errRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r errRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (r errRows) Next() bool                                   { return false }
func (r errRows) Scan(...any) error                            { return r.err }
func (r errRows) Values() ([]any, error)                       { return nil, r.err }
func (r errRows) RawValues() [][]byte                          { return nil }
func (r errRows) Conn() *pgx.Conn                              { return nil }
func (r errRows) TypeMap() *pgtype.Map                         { return nil }

// inTx runs fn in a transaction on the store's pool and commits it, as
// pgx.BeginFunc does, ending the server process of its connection if that
// was lost (see internal/pgtx).
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgtx.Run(ctx, s.pool, pgtx.Options{}, fn)
}
