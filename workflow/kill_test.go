package workflow_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/workflow"
)

const childEnv = "STRATA_WORKFLOW_CHILD"

// TestWorkflowChild is the worker process that the kill tests start and
// SIGKILL; it does nothing in an ordinary run.
func TestWorkflowChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("child process of the kill tests")
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("STRATA_WORKFLOW_DB"))
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t)
	store := eventstore.New(pool, &eventstore.Config{Schema: os.Getenv("STRATA_WORKFLOW_SCHEMA"), Validator: reg})
	r, err := workflow.New(store, reg, payWorkflow(), &workflow.Config{Workers: 4, LeaseTTL: 500 * time.Millisecond,
		PollInterval: 100 * time.Millisecond, BatchSize: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Fatal(r.Run(ctx)) // runs until killed
}

// killEnv runs worker processes on one test's schema.
type killEnv struct {
	*env
	t *testing.T
}

type child struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func (k *killEnv) start() *child {
	cmd := exec.Command(os.Args[0], "-test.run=^TestWorkflowChild$", "-test.v")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), childEnv+"=1", "STRATA_WORKFLOW_DB="+k.db.URL, "STRATA_WORKFLOW_SCHEMA="+k.db.Schema)
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	return &child{cmd: cmd, out: &out}
}

func (k *killEnv) kill(c *child) {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	err := c.cmd.Wait()
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		k.t.Fatalf("worker ended by itself (%v):\n%s", err, c.out.String())
	}
}

// placeAll places n orders, pacing them over about spread: even orders
// are paid at once (their one-hour deadline is cancelled), odd ones never
// (their deadline, 200ms to 1.5s away, fires).
func (k *killEnv) placeAll(n int, spread time.Duration) {
	for i := range n {
		id := strconv.Itoa(i)
		ttl := int64(200 + rand.IntN(1300))
		if i%2 == 0 {
			ttl = 3_600_000
		}
		k.append(k.t, "order-"+id, OrderPlaced{Order: id, TTL: ttl})
		if i%2 == 0 {
			k.append(k.t, "payment-"+id, PaymentDone{Order: id})
		}
		time.Sleep(spread / time.Duration(n))
	}
}

// check verifies that every instance ended as its inputs dictate, with
// every outgoing event once and no deadline left.
func (k *killEnv) check(n int) {
	t := k.t
	for i := range n {
		id := strconv.Itoa(i)
		wantPay, wantMail := []string{"Started", "Paid"}, []string{"Confirmed"}
		if i%2 == 1 {
			wantPay, wantMail = []string{"Started", "TimedOut"}, []string{"Cancelled"}
		}
		if got := k.types(t, "pay-"+id); !slices.Equal(got, wantPay) {
			t.Errorf("pay-%s = %v, want %v", id, got, wantPay)
		}
		if got := k.types(t, "mail-"+id); !slices.Equal(got, wantMail) {
			t.Errorf("mail-%s = %v, want %v", id, got, wantMail)
		}
		if got := k.types(t, "charge-"+id); !slices.Equal(got, []string{"Charge"}) {
			t.Errorf("charge-%s = %v, want one Charge", id, got)
		}
	}
	if got := k.deadlines(t); got != 0 {
		t.Errorf("%d deadlines left", got)
	}
	if got := k.finished(t); got != n {
		t.Errorf("%d instances finished, want %d", got, n)
	}
	dl, err := k.store.DeadLetters(context.Background(), workflow.SubscriptionPrefix+"pay")
	if err != nil || len(dl) != 0 {
		t.Errorf("dead letters: %v, %v", dl, err)
	}
}

func (k *killEnv) waitFinished(n int, c *child, d time.Duration) {
	deadline := time.Now().Add(d)
	for k.finished(k.t) < n {
		if time.Now().After(deadline) {
			k.diagnose(n)
			k.t.Fatalf("%d of %d instances finished after %s; worker output:\n%s", k.finished(k.t), n, d, c.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSIGKILLedWorker places 200 orders, each with a deadline, while the
// worker process (reactions and deadline firing, 4 partitions) is killed
// with SIGKILL at random moments and started again: every instance ends
// as its inputs dictate, every outgoing event is there exactly once,
// every deadline fired once or was cancelled. 10 kills;
// STRATA_WORKFLOW_KILLS sets another number (20 takes about 20s).
func TestSIGKILLedWorker(t *testing.T) {
	t.Parallel()
	kills := 10
	if s := os.Getenv("STRATA_WORKFLOW_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	const n = 200
	k := &killEnv{env: newEnv(t), t: t}
	var wg sync.WaitGroup
	wg.Go(func() { k.placeAll(n, time.Duration(kills)*300*time.Millisecond) })
	midway := 0
	for i := range kills {
		c := k.start()
		// Let this worker make progress (the killed one's lease must
		// expire first), then kill it wherever it is.
		before := k.finished(t)
		deadline := time.Now().Add(10 * time.Second)
		for k.finished(t) < min(before+n/(kills+2), n) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		k.kill(c)
		done := k.finished(t)
		if done < n {
			midway++
		}
		t.Logf("kill %d: %d of %d instances finished, %d deadlines pending, %d inputs queued", i+1, done, n, k.deadlines(t),
			k.count(t, `SELECT count(*) FROM %s.workflow_inbox`))
	}
	wg.Wait()
	c := k.start()
	defer k.kill(c)
	k.waitFinished(n, c, 60*time.Second)
	k.check(n)
	if midway < kills/2 {
		t.Errorf("only %d of %d kills landed before the end", midway, kills)
	}
}

// TestTwoWorkersOneKilled runs two worker processes on the same
// instances and kills one midway: the other takes over its partitions
// and its due deadlines and finishes every instance.
func TestTwoWorkersOneKilled(t *testing.T) {
	t.Parallel()
	const n = 200
	k := &killEnv{env: newEnv(t), t: t}
	a, b := k.start(), k.start()
	var wg sync.WaitGroup
	wg.Go(func() { k.placeAll(n, 3*time.Second) })
	deadline := time.Now().Add(30 * time.Second)
	for k.finished(t) < n/4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	k.kill(a)
	t.Logf("killed one worker with %d of %d instances finished", k.finished(t), n)
	wg.Wait()
	defer k.kill(b)
	k.waitFinished(n, b, 60*time.Second)
	k.check(n)
}

// diagnose logs what the unfinished instances have.
func (k *killEnv) diagnose(n int) {
	t := k.t
	shown := 0
	for i := range n {
		id := strconv.Itoa(i)
		pay := k.types(t, "pay-"+id)
		if len(pay) == 2 || shown > 10 {
			continue
		}
		shown++
		t.Logf("instance %s: pay %v, mail %v, order %v, payment %v, deadlines %d", id, pay, k.types(t, "mail-"+id),
			k.types(t, "order-"+id), k.types(t, "payment-"+id),
			k.count(t, `SELECT count(*) FROM %s.workflow_deadlines WHERE instance_key = $1`, id))
	}
	rows, _ := k.db.Pool.Query(context.Background(), `SELECT partition, owner, position_tx, position_seq, state, coalesce(last_error, '') FROM `+k.db.Schema+`.subscriptions`)
	for rows.Next() {
		var p int
		var owner *string
		var tx, seq int64
		var state, lastErr string
		_ = rows.Scan(&p, &owner, &tx, &seq, &state, &lastErr)
		t.Logf("partition %d: owner %v at %d/%d %s %s", p, owner, tx, seq, state, lastErr)
	}
	rows.Close()
	var head string
	_ = k.db.Pool.QueryRow(context.Background(), `SELECT max(transaction_id)::text || '/' || max(position)::text FROM `+k.db.Schema+`.events`).Scan(&head)
	t.Logf("head %s", head)
}
