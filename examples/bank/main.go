// Command bank moves money between accounts from many goroutines at once,
// each transfer debiting one account and crediting another in one
// transaction with aggregate.UnitOfWork, and a typed projection keeps the
// balances table. At the end it checks that no money appeared or vanished:
// the total of the accounts, loaded from their events, and of the read
// model equal what was deposited. It exits with 1 if not.
//
//	go run ./examples/bank                      # 10 goroutines × 10 transfers over 5 accounts
//	go run ./examples/bank -workers 20 -transfers 25
//
// It connects to DATABASE_URL, or to postgres://postgres@127.0.0.1:5432/test,
// and works in a schema of its own, dropped at the end unless -keep is given.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/aggregate"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/migrations"
	"github.com/strata-go/strata/projection"
	"github.com/strata-go/strata/schema"
)

// Deposited puts money into an account.
type Deposited struct {
	Cents int64 `json:"cents"`
}

// Withdrawn takes money out of an account.
type Withdrawn struct {
	Cents int64 `json:"cents"`
}

const moneySchema = `{"type":"object","required":["cents"],"additionalProperties":false,
	"properties":{"cents":{"type":"integer","minimum":1}}}`

// Account is the aggregate: its balance never goes below zero.
type Account struct {
	aggregate.Root
	Balance int64 `json:"balance"`
}

// Apply changes the balance for one event.
func (a *Account) Apply(ev any) {
	switch e := ev.(type) {
	case Deposited:
		a.Balance += e.Cents
	case Withdrawn:
		a.Balance -= e.Cents
	}
}

// ErrInsufficientFunds refuses a transfer the balance does not cover.
var ErrInsufficientFunds = errors.New("insufficient funds")

// Transfer moves cents from a to b.
func Transfer(a, b *Account, cents int64) error {
	if a.Balance < cents {
		return ErrInsufficientFunds
	}
	a.Raise(Withdrawn{Cents: cents})
	b.Raise(Deposited{Cents: cents})
	return nil
}

func main() {
	workers := flag.Int("workers", 10, "goroutines making transfers")
	transfers := flag.Int("transfers", 10, "transfers per goroutine")
	accounts := flag.Int("accounts", 5, "accounts")
	keep := flag.Bool("keep", false, "keep the schema afterwards")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, *workers, *transfers, max(*accounts, 2), *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bank:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, workers, transfers, accounts int, keep bool) error {
	pool, err := pgxpool.New(ctx, cmp.Or(os.Getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/test"))
	if err != nil {
		return err
	}
	defer pool.Close()
	schemaName := fmt.Sprintf("strata_bank_%d", os.Getpid())
	if !keep {
		defer pool.Exec(context.WithoutCancel(ctx), `DROP SCHEMA IF EXISTS `+schemaName+` CASCADE`)
	}
	if err := migrations.Apply(ctx, pool, schemaName); err != nil {
		return err
	}
	balances := pgx.Identifier{schemaName, "balances"}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+balances+` (account text PRIMARY KEY, cents bigint NOT NULL)`); err != nil {
		return err
	}

	reg := schema.NewRegistry()
	if err := errors.Join(
		schema.Register[Deposited](reg, "Deposited", 1, []byte(moneySchema)),
		schema.Register[Withdrawn](reg, "Withdrawn", 1, []byte(moneySchema)),
	); err != nil {
		return err
	}
	store := eventstore.New(pool, &eventstore.Config{Schema: schemaName, Validator: reg})
	repo := aggregate.NewRepository(store, reg, func(string) *Account { return &Account{} }, nil)

	// The read model: one typed function per event type.
	h := projection.NewTypedHandler(reg, nil)
	add := func(ctx context.Context, tx pgx.Tx, account string, cents int64) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+balances+` VALUES ($1, $2)
			ON CONFLICT (account) DO UPDATE SET cents = balances.cents + $2`, account, cents)
		return err
	}
	if err := errors.Join(
		projection.On(h, func(ctx context.Context, tx pgx.Tx, e projection.Decoded[Deposited]) error {
			return add(ctx, tx, e.AggregateID, e.Value.Cents)
		}),
		projection.On(h, func(ctx context.Context, tx pgx.Tx, e projection.Decoded[Withdrawn]) error {
			return add(ctx, tx, e.AggregateID, -e.Value.Cents)
		}),
	); err != nil {
		return err
	}
	runner := projection.NewRunner(store, []projection.Projection{{Name: "balances", Handler: h, Types: h.Types()}}, nil)
	rctx, stopRunner := context.WithCancel(ctx)
	runnerDone := make(chan error, 1)
	go func() { runnerDone <- runner.Run(rctx) }()
	defer func() { stopRunner(); <-runnerDone }()

	const opening = 100_000
	for i := range accounts {
		a := repo.New(fmt.Sprint(i))
		a.Raise(Deposited{Cents: opening})
		if err := repo.Save(ctx, a); err != nil {
			return err
		}
	}
	want := int64(accounts * opening)

	var retries, done, refused atomic.Int64
	uow := aggregate.NewUnitOfWork(store, &aggregate.UnitConfig{OnRetry: func(int, error) { retries.Add(1) }})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(w), 1))
		wg.Go(func() {
			for range transfers {
				from := rng.IntN(accounts)
				to := (from + 1 + rng.IntN(accounts-1)) % accounts
				cents := int64(1 + rng.IntN(5_000))
				err := uow.Run(ctx, func(ctx context.Context, s *aggregate.Session) error {
					a, err := aggregate.Get(ctx, s, repo, fmt.Sprint(from))
					if err != nil {
						return err
					}
					b, err := aggregate.Get(ctx, s, repo, fmt.Sprint(to))
					if err != nil {
						return err
					}
					return Transfer(a, b, cents)
				})
				switch {
				case errors.Is(err, ErrInsufficientFunds):
					refused.Add(1)
				case err != nil:
					errs <- err
					return
				default:
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	wall := time.Since(start)
	fmt.Printf("%d transfers (%d refused for funds) by %d goroutines over %d accounts in %v, %.2f retries per transfer\n",
		done.Load(), refused.Load(), workers, accounts, wall.Round(time.Millisecond), float64(retries.Load())/float64(workers*transfers))

	var total int64
	for i := range accounts {
		a, err := repo.Load(ctx, fmt.Sprint(i))
		if err != nil {
			return err
		}
		fmt.Printf("  account %d: %8d cents (version %d)\n", i, a.Balance, a.Version())
		total += a.Balance
	}
	if total != want {
		return fmt.Errorf("the accounts hold %d cents in total, want %d: money was created or lost", total, want)
	}
	// The read model catches up through the log; wait for it.
	var model int64
	for {
		// The checkpoint first: once it is at the head, the model read
		// after it holds every event (they commit together).
		st, err := runner.Status(ctx)
		if err != nil {
			return err
		}
		var rows int
		if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(cents), 0) FROM `+balances).Scan(&rows, &model); err != nil {
			return err
		}
		if rows == accounts && len(st) == 1 && st[0].Lag == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the balances projection did not catch up: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if model != want {
		return fmt.Errorf("the balances read model holds %d cents in total, want %d", model, want)
	}
	fmt.Printf("total conserved: %d cents in the accounts and in the read model\n", total)
	return nil
}
