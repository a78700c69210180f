package schema_test

import (
	"encoding/json"
	"testing"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// Validation allocates nothing when the payload is valid, so Encode costs
// the allocations of json.Marshal and Decode of a current event those of
// json.Unmarshal, no more.
func TestNoAllocationsWhereNoneAreNeeded(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("coverage counters and the race detector change allocation counts")
	}
	reg := newOrders(t)
	o := sampleOrder()
	ev, err := reg.Encode(&o)
	must(t, err)
	if n := testing.AllocsPerRun(100, func() { must(t, reg.Validate(ev)) }); n != 0 {
		t.Errorf("Validate of a valid event: %v allocations, want 0", n)
	}
	marshal := testing.AllocsPerRun(100, func() { _, _ = json.Marshal(&o) })
	if n := testing.AllocsPerRun(100, func() { _, err := reg.Encode(&o); must(t, err) }); n > marshal {
		t.Errorf("Encode: %v allocations, json.Marshal %v", n, marshal)
	}
	e := eventstore.Event{Type: ev.Type, SchemaVersion: ev.SchemaVersion, Data: ev.Data}
	unmarshal := testing.AllocsPerRun(100, func() { var v OrderPlaced; _ = json.Unmarshal(ev.Data, &v) })
	if n := testing.AllocsPerRun(100, func() { _, err := schema.DecodeAs[OrderPlaced](reg, e); must(t, err) }); n > unmarshal {
		t.Errorf("DecodeAs of a current event: %v allocations, json.Unmarshal %v", n, unmarshal)
	}
}
