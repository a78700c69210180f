package pubsub_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for the baseline

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
	"github.com/strata-go/strata/pubsub"
)

// BenchmarkPubSub compares this Pub/Sub with Watermill's own SQL Pub/Sub
// (watermill-sql v4, Postgres adapter, set up as its docs show:
// database/sql with the pgx driver, its own tables in a schema of their
// own) on the same database, in one run. Each sub-benchmark runs a fixed
// workload, alternating baseline and strata for STRATA_BENCH_ROUNDS
// rounds (default 3) so that both see the same load on a shared machine,
// and reports the medians and x_baseline = strata ÷ baseline (throughput:
// higher is better; latency: lower is better). Run it once:
//
//	go test -run '^$' -bench BenchmarkPubSub -benchtime 1x ./pubsub/
//
// Payloads are 298-byte JSON documents. The baseline polls every 10ms (its
// default is 1s; it has no wake-up); ours waits for LISTEN/NOTIFY with a
// 1s poll as fallback.
func BenchmarkPubSub(b *testing.B) {
	rounds := 3
	if r, err := strconv.Atoi(os.Getenv("STRATA_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	type setup func(b *testing.B) (message.Publisher, func(group string) message.Subscriber)
	impls := []struct {
		name string
		new  setup
	}{{"baseline", newWatermillSQL}, {"strata", newStrata}}
	type workload func(b *testing.B, pub message.Publisher, sub func(string) message.Subscriber) []float64
	workloads := []struct {
		name    string
		metrics []string // first is the headline; "ms" metrics are lower-is-better
		run     workload
	}{
		{"publish/1-publisher", []string{"msgs/s"}, func(b *testing.B, pub message.Publisher, _ func(string) message.Subscriber) []float64 {
			return []float64{publishRate(b, pub, 1, 2000)}
		}},
		{"publish/16-publishers", []string{"msgs/s"}, func(b *testing.B, pub message.Publisher, _ func(string) message.Subscriber) []float64 {
			return []float64{publishRate(b, pub, 16, 10000)}
		}},
		{"publish+consume/16-publishers-live", []string{"msgs/s"}, func(b *testing.B, pub message.Publisher, sub func(string) message.Subscriber) []float64 {
			return []float64{pipelineRate(b, pub, sub, 16, 10000)}
		}},
		{"consume/backlog-5k", []string{"msgs/s"}, func(b *testing.B, pub message.Publisher, sub func(string) message.Subscriber) []float64 {
			return []float64{consumeRate(b, pub, sub, 5000)}
		}},
		{"consume/backlog-50k", []string{"msgs/s"}, func(b *testing.B, pub message.Publisher, sub func(string) message.Subscriber) []float64 {
			return []float64{consumeRate(b, pub, sub, 50000)}
		}},
		{"latency/200-per-s", []string{"p50_ms", "p99_ms"}, func(b *testing.B, pub message.Publisher, sub func(string) message.Subscriber) []float64 {
			p50, p99 := latency(b, pub, sub, 400, 5*time.Millisecond)
			return []float64{p50, p99}
		}},
	}
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			type side struct {
				pub message.Publisher
				sub func(string) message.Subscriber
			}
			vals := make([][][]float64, len(impls)) // impl → metric → rounds
			for i := range vals {
				vals[i] = make([][]float64, len(w.metrics))
			}
			for range b.N * rounds {
				// Fresh schemas each round: every round measures a store
				// holding only this workload's topic.
				sides := make([]side, len(impls))
				for i, im := range impls {
					sides[i].pub, sides[i].sub = im.new(b)
				}
				for i := range impls {
					for m, v := range w.run(b, sides[i].pub, sides[i].sub) {
						vals[i][m] = append(vals[i][m], v)
					}
				}
			}
			for m, unit := range w.metrics {
				base, ours := median(vals[0][m]), median(vals[1][m])
				b.ReportMetric(ours, "strata_"+unit)
				b.ReportMetric(base, "baseline_"+unit)
				b.ReportMetric(ours/base, "x_baseline_"+strings.SplitN(unit, "_", 2)[0])
				b.Logf("%s %s: strata %.1f %v, watermill-sql %.1f %v, ratio %.2fx", w.name, unit, ours, vals[1][m], base, vals[0][m], ours/base)
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pipelineRate publishes n messages, one per call from w goroutines, to a
// topic a live subscriber consumes, and returns n ÷ the time from the
// first publish to the last message received.
func pipelineRate(b *testing.B, pub message.Publisher, sub func(string) message.Subscriber, w, n int) float64 {
	topic := benchTopic()
	if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), benchPayload)); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub(fmt.Sprintf("g%d", benchTopics.Add(1))).Subscribe(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	(<-ch).Ack() // the warm-up message
	start := time.Now()
	var next atomic.Int64
	for range w {
		go func() {
			for next.Add(1) <= int64(n) {
				if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), benchPayload)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	seen := make(map[string]struct{}, n)
	timeout := time.After(5 * time.Minute)
	for len(seen) < n {
		select {
		case msg := <-ch:
			seen[msg.UUID] = struct{}{}
			msg.Ack()
		case <-timeout:
			b.Fatalf("consumed %d of %d in 5 minutes", len(seen), n)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

var benchPayload = []byte(fmt.Sprintf(`{"order_id":"%s","customer":"c-123456","lines":[{"sku":"sku-1","qty":2,"price":1999},{"sku":"sku-2","qty":1,"price":4999}],"currency":"EUR","note":"%s"}`,
	"0190c0de-0000-7000-8000-000000000000", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))

func newStrata(b *testing.B) (message.Publisher, func(string) message.Subscriber) {
	db := pgtest.New(b)
	s := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	pub, err := pubsub.NewPublisher(s, nil)
	if err != nil {
		b.Fatal(err)
	}
	return pub, func(group string) message.Subscriber {
		sub, err := pubsub.NewSubscriber(s, &pubsub.SubscriberConfig{ConsumerGroup: group})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = sub.Close() })
		return sub
	}
}

func newWatermillSQL(b *testing.B) (message.Publisher, func(string) message.Subscriber) {
	db := pgtest.NewEmpty(b)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{db.Schema}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(db.URL)
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", db.Schema)
	u.RawQuery = q.Encode()
	sdb, err := sql.Open("pgx", u.String())
	if err != nil {
		b.Fatal(err)
	}
	sdb.SetMaxOpenConns(40)
	b.Cleanup(func() { _ = sdb.Close() })
	conn := wsql.BeginnerFromStdSQL(sdb)
	pub, err := wsql.NewPublisher(conn, wsql.PublisherConfig{
		SchemaAdapter:        wsql.DefaultPostgreSQLSchema{},
		AutoInitializeSchema: true,
	}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	return pub, func(group string) message.Subscriber {
		sub, err := wsql.NewSubscriber(conn, wsql.SubscriberConfig{
			ConsumerGroup:    group,
			SchemaAdapter:    wsql.DefaultPostgreSQLSchema{},
			OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
			InitializeSchema: true,
			PollInterval:     10 * time.Millisecond,
		}, watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = sub.Close() })
		return sub
	}
}

var benchTopics atomic.Int64

func benchTopic() string {
	return fmt.Sprintf("bench_%d_%d", time.Now().UnixNano(), benchTopics.Add(1))
}

// publishRate publishes n messages, one per Publish call, from w
// goroutines, and returns messages per second.
func publishRate(b *testing.B, pub message.Publisher, w, n int) float64 {
	topic := benchTopic()
	// The first publish creates the baseline's table; not timed.
	if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), benchPayload)); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range w {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), benchPayload)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// consumeRate fills a topic with n messages (published 100 per call, not
// timed) and times one subscriber draining it, acking each message.
func consumeRate(b *testing.B, pub message.Publisher, sub func(string) message.Subscriber, n int) float64 {
	topic := benchTopic()
	batch := make([]*message.Message, 0, 100)
	for i := range n {
		batch = append(batch, message.NewMessage(watermill.NewUUID(), benchPayload))
		if len(batch) == 100 || i == n-1 {
			if err := pub.Publish(topic, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	ch, err := sub(fmt.Sprintf("g%d", benchTopics.Add(1))).Subscribe(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	seen := make(map[string]struct{}, n)
	timeout := time.After(5 * time.Minute)
	for len(seen) < n {
		select {
		case msg := <-ch:
			seen[msg.UUID] = struct{}{}
			msg.Ack()
		case <-timeout:
			b.Fatalf("consumed %d of %d in 5 minutes", len(seen), n)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// latency publishes n messages, one every gap, to a live subscriber and
// returns the p50 and p99 of publish start → message received, in ms.
func latency(b *testing.B, pub message.Publisher, sub func(string) message.Subscriber, n int, gap time.Duration) (p50, p99 float64) {
	topic := benchTopic()
	if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), benchPayload)); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub(fmt.Sprintf("g%d", benchTopics.Add(1))).Subscribe(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	(<-ch).Ack() // the warm-up message
	var mu sync.Mutex
	sentAt := map[string]time.Time{}
	go func() {
		for range n {
			msg := message.NewMessage(watermill.NewUUID(), benchPayload)
			mu.Lock()
			sentAt[msg.UUID] = time.Now()
			mu.Unlock()
			if err := pub.Publish(topic, msg); err != nil {
				b.Error(err)
				return
			}
			time.Sleep(gap)
		}
	}()
	var lat []float64
	timeout := time.After(2 * time.Minute)
	for len(lat) < n {
		select {
		case msg := <-ch:
			now := time.Now()
			mu.Lock()
			lat = append(lat, float64(now.Sub(sentAt[msg.UUID]).Microseconds())/1000)
			mu.Unlock()
			msg.Ack()
		case <-timeout:
			b.Fatalf("received %d of %d", len(lat), n)
		}
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}
