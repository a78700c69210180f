package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/strata-go/strata/cli"
	"github.com/strata-go/strata/outbox"
)

// TestStatusShowsConsumers: a deduplicating consumer's processed count
// and last message appear in status, as text and as JSON.
func TestStatusShowsConsumers(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	handle := outbox.Deduplicate(d.db.Pool, d.db.Schema, "billing")(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	for _, id := range []string{"m-1", "m-2", "m-3", "m-2"} { // m-2 twice: recorded once
		if _, err := handle(message.NewMessage(id, []byte(`{}`))); err != nil {
			t.Fatal(err)
		}
	}
	r := want(t, d.embedded(cli.Config{}, "status", "--json"), cli.ExitOK)
	var rep struct {
		Consumers []struct {
			Name            string    `json:"name"`
			Processed       int64     `json:"processed"`
			LastProcessedAt time.Time `json:"last_processed_at"`
		} `json:"consumers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if len(rep.Consumers) != 1 || rep.Consumers[0].Name != "billing" || rep.Consumers[0].Processed != 3 ||
		time.Since(rep.Consumers[0].LastProcessedAt) > time.Minute {
		t.Fatalf("consumers: %+v", rep.Consumers)
	}
	r = want(t, d.embedded(cli.Config{}, "status"), cli.ExitOK)
	if !strings.Contains(r.stdout, "CONSUMER") || !strings.Contains(r.stdout, "billing") {
		t.Fatalf("status does not show the consumer:\n%s", r.stdout)
	}
}
