package main

import (
	"strings"
	"testing"

	"github.com/strata-go/strata/outbox/kafka/kafkatest"
)

// The shop on Kafka: the relay publishes to an in-process Kafka-protocol
// cluster of three brokers (kafkatest, franz-go's kfake) that this test
// starts, and the payment and notification services consume from it, each
// its own consumer group. Against a real cluster, the same run is
//
//	go run ./examples/shop -broker kafka://127.0.0.1:9092
func TestShopOnKafka(t *testing.T) {
	t.Parallel()
	c := kafkatest.Start(t, nil)
	spec := "kafka://" + strings.Join(c.Addrs(), ",") + "?compression=lz4"
	name, out, errOut, code := runShop(t, "-broker", spec, "-timeout", "2m")
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s\nstdout:\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "broker: Kafka 127.0.0.1:") {
		t.Errorf("the account does not name Kafka:\n%s", out)
	}
	checkAccount(t, name, out, 3)
	if c.BytesIn() == 0 {
		t.Error("the cluster received nothing")
	}
}

// A kafka:// broker with a codec the producer does not know is refused
// before anything runs, naming the codec.
func TestShopKafkaBadCompression(t *testing.T) {
	t.Parallel()
	_, out, errOut, code := runShop(t, "-broker", "kafka://127.0.0.1:1?compression=brotli", "-timeout", "30s")
	if code == 0 || !strings.Contains(errOut+out, `compression "brotli"`) {
		t.Errorf("exit code %d; stderr:\n%s", code, errOut)
	}
}
