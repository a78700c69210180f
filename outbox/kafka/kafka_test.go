package kafka_test

import (
	"testing"

	"github.com/IBM/sarama"
	"github.com/google/uuid"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/outbox"
	"github.com/strata-go/strata/outbox/kafka"
)

// TestPartitionKey builds the publisher configuration (no broker runs
// here), marshals relayed messages with its marshaler, and checks that the
// Kafka key is the stream ID, that all of a stream's messages go to one
// partition, and that the producer settings keep order under retries.
func TestPartitionKey(t *testing.T) {
	cfg, err := kafka.PublisherConfig([]string{"127.0.0.1:9092"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.OverwriteSaramaConfig.Validate(); err != nil {
		t.Fatalf("sarama config: %v", err)
	}
	sc := cfg.OverwriteSaramaConfig
	if !sc.Producer.Idempotent || sc.Producer.RequiredAcks != sarama.WaitForAll || sc.Net.MaxOpenRequests != 1 || !sc.Producer.Return.Successes {
		t.Errorf("producer config does not keep order under retries: %+v", sc.Producer)
	}
	partitioner := sc.Producer.Partitioner("order")
	partitions := map[string]int32{}
	for _, stream := range []string{"order-1", "order-2", "order-1", "order-3", "order-2"} {
		e := eventstore.Event{ID: uuid.New(), StreamID: stream, Version: 1, Type: "Placed", Data: []byte(`{}`)}
		pm, err := cfg.Marshaler.Marshal("order", outbox.NewMessage(e))
		if err != nil {
			t.Fatal(err)
		}
		key, err := pm.Key.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if string(key) != stream {
			t.Errorf("key %q, want the stream ID %q", key, stream)
		}
		if pm.Topic != "order" {
			t.Errorf("topic %q", pm.Topic)
		}
		p, err := partitioner.Partition(pm, 12)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := partitions[stream]; ok && prev != p {
			t.Errorf("stream %s went to partitions %d and %d", stream, prev, p)
		}
		partitions[stream] = p
		// The consumer side reads the same message back.
		value, err := pm.Value.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := kafka.Marshaler().Unmarshal(&sarama.ConsumerMessage{Key: key, Value: value, Headers: headers(pm.Headers)})
		if err != nil {
			t.Fatal(err)
		}
		if back.UUID != e.ID.String() || back.Metadata.Get(outbox.MetaStream) != stream {
			t.Errorf("round trip: %s %v", back.UUID, back.Metadata)
		}
	}
	if !kafka.Permanent(sarama.ErrMessageSizeTooLarge) || kafka.Permanent(sarama.ErrOutOfBrokers) {
		t.Error("Permanent misclassifies errors")
	}
}

func headers(hs []sarama.RecordHeader) []*sarama.RecordHeader {
	out := make([]*sarama.RecordHeader, len(hs))
	for i := range hs {
		out[i] = &hs[i]
	}
	return out
}
