package pubsub_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// The child role: a consumer process. It subscribes with the settings in
// its environment and prints "got <payload> <uuid>" for every message
// before acking it.
const childEnv = "STRATA_PUBSUB_CHILD"

func TestChildConsumer(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("child process role only")
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("STRATA_PUBSUB_URL"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	store := eventstore.New(pool, &eventstore.Config{Schema: os.Getenv("STRATA_PUBSUB_SCHEMA")})
	batch, _ := strconv.Atoi(os.Getenv("STRATA_PUBSUB_BATCH"))
	parts, _ := strconv.Atoi(os.Getenv("STRATA_PUBSUB_PARTITIONS"))
	work, _ := time.ParseDuration(os.Getenv("STRATA_PUBSUB_WORK"))
	lease, _ := time.ParseDuration(os.Getenv("STRATA_PUBSUB_LEASE"))
	sub, err := pubsub.NewSubscriber(store, &pubsub.SubscriberConfig{
		ConsumerGroup: "workers", BatchSize: batch, Partitions: parts,
		LeaseTTL: lease, PollInterval: 100 * time.Millisecond,
	})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	ch, err := sub.Subscribe(ctx, os.Getenv("STRATA_PUBSUB_TOPIC"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	for msg := range ch {
		fmt.Fprintf(out, "got %s %s\n", msg.Payload, msg.UUID)
		out.Flush()
		time.Sleep(work) // the consumer's work
		msg.Ack()
	}
}

// child is a running consumer process whose "got" lines arrive on lines.
type child struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{}
}

func startChild(t *testing.T, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildConsumer$", "-test.count=1")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=1"}, env...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 100000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "got ") {
				c.lines <- strings.TrimPrefix(sc.Text(), "got ")
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(c.kill)
	return c
}

// kill SIGKILLs the child and waits until its output is drained.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	_ = c.cmd.Wait()
}

// childEnvFor is the environment of a child consumer. lease is its
// LeaseTTL: long enough that a renewal delayed on a loaded machine (leases
// are renewed every lease/3) does not lose it, since a lost lease hands the
// partition on and makes messages come again, which these tests count as
// a failure.
func childEnvFor(schema, url, topic string, batch, partitions int, work, lease time.Duration) []string {
	return []string{
		"STRATA_PUBSUB_URL=" + url, "STRATA_PUBSUB_SCHEMA=" + schema, "STRATA_PUBSUB_TOPIC=" + topic,
		"STRATA_PUBSUB_BATCH=" + strconv.Itoa(batch), "STRATA_PUBSUB_PARTITIONS=" + strconv.Itoa(partitions),
		"STRATA_PUBSUB_WORK=" + work.String(), "STRATA_PUBSUB_LEASE=" + lease.String(),
	}
}

// A consumer process killed with SIGKILL mid-stream and started again
// resumes right after its last committed ack: with BatchSize b, its first
// message after the restart is at most b messages before the one after the
// last message it had received, and never after it; nothing is skipped and
// the order holds. With b = 1 that is "the message after the last ack, or
// the one whose ack was in flight".
func TestKilledConsumerResumesAfterLastAck(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{1, 10} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			t.Parallel()
			s, db := newStore(t)
			pub, _ := newPubSub(t, s, nil)
			const n = 300
			msgs := make([]*message.Message, n)
			for i := range msgs {
				msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)))
			}
			if err := pub.Publish("jobs", msgs...); err != nil {
				t.Fatal(err)
			}
			// The restarted child takes over once the killed one's lease
			// expired: 6s keeps that short and the lease safe under load.
			env := childEnvFor(db.Schema, db.URL, "jobs", batch, 1, 2*time.Millisecond, 6*time.Second)
			next := func(c *child) int {
				select {
				case l := <-c.lines:
					i, err := strconv.Atoi(strings.Fields(l)[0])
					if err != nil {
						t.Fatal(l)
					}
					return i
				case <-time.After(60 * time.Second):
					t.Fatal("child consumer delivered nothing for 60s")
				}
				return 0
			}
			c1 := startChild(t, env...)
			last := -1
			for last < 105 {
				i := next(c1)
				if i != last+1 {
					t.Fatalf("first run: got %d after %d", i, last)
				}
				last = i
			}
			c1.kill()
			for len(c1.lines) > 0 { // lines printed before the kill
				i := next(c1)
				if i != last+1 {
					t.Fatalf("first run: got %d after %d", i, last)
				}
				last = i
			}
			c2 := startChild(t, env...)
			first := next(c2)
			t.Logf("killed after receiving %d; restarted at %d", last, first)
			if first > last+1 || first < last+1-batch {
				t.Fatalf("restarted at %d after receiving up to %d with batch %d: want %d..%d", first, last, batch, last+1-batch, last+1)
			}
			for prev := first; prev < n-1; {
				i := next(c2)
				if i != prev+1 {
					t.Fatalf("second run: got %d after %d", i, prev)
				}
				prev = i
			}
		})
	}
}

// Two processes in one consumer group share a partitioned topic: each
// takes half the partitions, every message is handled by exactly one of
// them, and each key's messages arrive in order.
func TestConsumerGroupAcrossProcesses(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	pub, err := pubsub.NewPublisher(s, &pubsub.PublisherConfig{
		PartitionKey: func(_ string, msg *message.Message) string { return msg.Metadata.Get("key") },
	})
	if err != nil {
		t.Fatal(err)
	}
	const parts = 8
	// Nothing is killed here: the lease only has to survive load.
	env := childEnvFor(db.Schema, db.URL, "shared", 10, parts, 0, 10*time.Second)
	a, b := startChild(t, env...), startChild(t, env...)
	name := pubsub.SubscriptionName(pubsub.DefaultPrefix, "workers", "shared")
	pgtest.WaitFor(t, "both processes to own half the partitions", 60*time.Second, func() bool {
		st, err := s.SubscriptionStatuses(context.Background(), name)
		if err != nil || len(st) != parts {
			return false
		}
		owners := map[string]int{}
		for _, p := range st {
			owners[p.Owner]++
		}
		if len(owners) != 2 {
			return false
		}
		for _, n := range owners {
			if n != parts/2 {
				return false
			}
		}
		return true
	})
	const keys, perKey = 40, 10
	for i := range perKey {
		for k := range keys {
			msg := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf("%d/%d", k, i)))
			msg.Metadata.Set("key", fmt.Sprintf("k%d", k))
			if err := pub.Publish("shared", msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	seen := map[string]string{} // payload → process
	lastOf := map[string]int{}  // key → last index
	count := map[string]int{}
	collect := func(name string, c *child, l string) {
		mu.Lock()
		defer mu.Unlock()
		payload := strings.Fields(l)[0]
		if other, dup := seen[payload]; dup {
			t.Errorf("message %s handled by %s and %s", payload, other, name)
		}
		seen[payload] = name
		count[name]++
		k, i, _ := strings.Cut(payload, "/")
		idx, _ := strconv.Atoi(i)
		if prev, ok := lastOf[k]; ok && idx != prev+1 {
			t.Errorf("key %s: %d after %d", k, idx, prev)
		} else if !ok && idx != 0 {
			t.Errorf("key %s starts at %d", k, idx)
		}
		lastOf[k] = idx
	}
	deadline := time.After(60 * time.Second)
	for len(seen) < keys*perKey {
		select {
		case l := <-a.lines:
			collect("a", a, l)
		case l := <-b.lines:
			collect("b", b, l)
		case <-deadline:
			t.Fatalf("handled %d of %d", len(seen), keys*perKey)
		}
	}
	if count["a"] == 0 || count["b"] == 0 {
		t.Fatalf("one process did all the work: %v", count)
	}
	t.Logf("split: %v", count)
}
