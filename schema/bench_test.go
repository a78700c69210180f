package schema_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// Each benchmark has a baseline doing the plain encoding/json work of the
// same event, so one run shows the registry's cost beside it.

func BenchmarkEncode(b *testing.B) {
	reg := newOrders(b)
	o := sampleOrder()
	ev, err := reg.Encode(o)
	must(b, err)
	b.SetBytes(int64(len(ev.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Encode(&o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeBaselineJSONMarshal(b *testing.B) {
	o := sampleOrder()
	data, err := json.Marshal(o)
	must(b, err)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(&o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	reg := newOrders(b)
	ev, err := reg.Encode(sampleOrder())
	must(b, err)
	b.SetBytes(int64(len(ev.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := reg.Validate(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeV1(b *testing.B) {
	reg := newOrders(b)
	e := eventstore.Event{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)}
	b.SetBytes(int64(len(e.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schema.DecodeAs[OrderPlaced](reg, e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCurrent(b *testing.B) {
	reg := newOrders(b)
	ev, err := reg.Encode(sampleOrder())
	must(b, err)
	e := eventstore.Event{Type: ev.Type, SchemaVersion: ev.SchemaVersion, Data: ev.Data}
	b.SetBytes(int64(len(e.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schema.DecodeAs[OrderPlaced](reg, e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBaselineJSONUnmarshal(b *testing.B) {
	data, err := json.Marshal(sampleOrder()) // the same event, already current
	must(b, err)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var v OrderPlaced
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSchemaOverhead runs each operation beside its baseline on the
// same event and reports the registry's extra cost per event as
// "overhead-ns/op" and the ratio to the baseline as "x-baseline".
func BenchmarkSchemaOverhead(b *testing.B) {
	reg := newOrders(b)
	o := sampleOrder()
	v1 := eventstore.Event{Type: "OrderPlaced", SchemaVersion: 1, Data: []byte(v1Order)}
	current, err := json.Marshal(o)
	must(b, err)
	ops := []struct {
		name         string
		op, baseline func() error
	}{
		{"encode", func() error { _, err := reg.Encode(&o); return err },
			func() error { _, err := json.Marshal(&o); return err }},
		{"decode-v1", func() error { _, err := schema.DecodeAs[OrderPlaced](reg, v1); return err },
			func() error { var v OrderPlaced; return json.Unmarshal(current, &v) }},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			b.ReportAllocs()
			var withReg, plain time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := op.op(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := op.baseline(); err != nil {
					b.Fatal(err)
				}
				withReg += t1.Sub(t0)
				plain += time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(withReg-plain)/n, "overhead-ns/op")
			b.ReportMetric(float64(withReg)/float64(plain), "x-baseline")
		})
	}
}
