package kafka_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/kafka"
	"github.com/strata-go/strata/outbox/kafka/kafkatest"
)

// payloads are the message sets the compression figures are measured on.
var payloads = []struct {
	name string
	make func(i int) []byte
}{
	// The shop example's three event types, in turn, as the relay
	// publishes them (with its metadata headers).
	{"shop events", func(i int) []byte {
		r := mrand.New(mrand.NewPCG(uint64(i), 1))
		names := []string{"margaret", "grace", "ada", "barbara", "frances", "radia"}
		n := names[r.IntN(len(names))]
		switch i % 3 {
		case 0:
			return fmt.Appendf(nil, `{"customer":%q,"email":"%s@example.com","total_cents":%d,"currency":"USD"}`, n, n, 500+r.IntN(50000))
		case 1:
			return fmt.Appendf(nil, `{"order_id":"%d","amount_cents":%d,"currency":"USD","method":"card"}`, 1000+i, 500+r.IntN(50000))
		}
		return fmt.Appendf(nil, `{"order_id":"%d","email":"%s@example.com","subject":"Your order %d is confirmed: $%d.%02d paid"}`, 1000+i, n, 1000+i, r.IntN(500), r.IntN(100))
	}},
	// 4 KiB JSON documents: an order with line items (structured,
	// repetitive keys, varied values), as larger events are.
	{"4 KiB JSON", func(i int) []byte {
		r := mrand.New(mrand.NewPCG(uint64(i), 2))
		var b strings.Builder
		fmt.Fprintf(&b, `{"order_id":"%d","customer":"c-%d","lines":[`, i, r.IntN(1e6))
		for k := 0; b.Len() < 4000; k++ {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"sku":"SKU-%06d","name":"item %d","qty":%d,"unit_cents":%d}`, r.IntN(1e6), r.IntN(1e4), 1+r.IntN(9), r.IntN(1e5))
		}
		b.WriteString(`]}`)
		return []byte(b.String())
	}},
	// 4 KiB of random bytes, base64: the worst case, nothing to find.
	{"4 KiB random", func(i int) []byte {
		raw := make([]byte, 3000)
		_, _ = rand.Read(raw)
		return []byte(`{"blob":"` + base64.StdEncoding.EncodeToString(raw) + `"}`)
	}},
}

// wireBytes publishes n messages of the payload set through a publisher
// with the given codec to a fresh cluster, perCall messages of one stream
// per Publish call, and returns the bytes the brokers received per
// message and the payload bytes per message.
func wireBytes(t *testing.T, codec string, gen func(int) []byte, n, perCall int) (wire, raw float64) {
	t.Helper()
	c := kafkatest.Start(t, &kafkatest.Config{Brokers: 1})
	pub, err := kafka.NewPublisher(c.Addrs(), &kafka.Config{Compression: codec})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	warm := outbox.NewMessage(eventstore.Event{ID: uuid.New(), StreamID: "order-0", Version: 1, Type: "OrderPlaced", Data: []byte(`{}`)})
	if err := pub.Publish("order", warm); err != nil {
		t.Fatal(err)
	}
	before := c.BytesIn()
	var payload int
	for i := 0; i < n; i += perCall {
		msgs := make([]*message.Message, 0, perCall)
		for k := i; k < i+perCall && k < n; k++ {
			data := gen(k)
			payload += len(data)
			msgs = append(msgs, outbox.NewMessage(eventstore.Event{ID: uuid.New(), StreamID: fmt.Sprintf("order-%d", i/perCall), Version: int64(k - i + 1),
				Type: "OrderPlaced", Data: data, RecordedAt: time.Now(),
				Metadata: eventstore.Metadata{CorrelationID: "req-" + uuid.NewString()[:8], CausationID: uuid.NewString()}}))
		}
		if err := pub.Publish("order", msgs...); err != nil {
			t.Fatal(err)
		}
	}
	return float64(c.BytesIn()-before) / float64(n), float64(payload) / float64(n)
}

// TestCompressionRatios measures what each codec saves on the wire (the
// bytes the brokers received, record batch and request framing included),
// on the shop's events and on 4 KiB payloads, for messages published one
// per record batch (what Publisher.Publish does, for order) and in
// batches of 20 messages of a stream (one produce request). The figures are logged; the test
// checks that zstd and lz4 save bytes where there is something to save.
//
//	go test -run TestCompressionRatios -v ./outbox/kafka/
func TestCompressionRatios(t *testing.T) {
	t.Parallel()
	const n = 300
	for _, p := range payloads {
		for _, perCall := range []int{1, 20} {
			none, raw := wireBytes(t, "none", p.make, n, perCall)
			line := fmt.Sprintf("%-12s %2d/batch: payload %5.0f B, wire none %5.0f B", p.name, perCall, raw, none)
			for _, codec := range []string{"lz4", "zstd", "snappy", "gzip"} {
				w, _ := wireBytes(t, codec, p.make, n, perCall)
				line += fmt.Sprintf(", %s %5.0f B (%4.1f%% saved)", codec, w, 100*(1-w/none))
				if (codec == "zstd" || codec == "lz4") && p.name != "4 KiB random" && (perCall > 1 || p.name == "4 KiB JSON") && w >= none {
					t.Errorf("%s: %s sends %.0f B per message, no fewer than uncompressed %.0f B", p.name, codec, w, none)
				}
			}
			t.Log(line)
		}
	}
}
