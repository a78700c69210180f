package schema

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/strata-go/strata/eventstore"
)

// Check reports every inconsistency in the registry, joined in one error
// (nil when there is none):
//
//   - an event name with schemas but no Go type bound by Register;
//   - a registered version with no chain of upcasters to the current one,
//     and an upcaster from a version that is not registered;
//   - a chain of upcasters that fails on a sample of an older version: the
//     samples added with SampleJSON for that version or, when there are
//     none, up to two documents generated from the version's schema (its
//     required properties; every declared property), each valid against
//     it. Each is upcast to the current version, validated against the
//     current schema and decoded into the Go type: an upcaster writing 1.5
//     into an integer field, or dropping a required one, fails here
//     rather than on the first old event read in production. A version
//     whose schema the generator cannot satisfy (a pattern, say) is
//     reported, asking for a sample;
//   - a Go type that does not round-trip: each sample (see Sample), or the
//     zero value when there is none, is marshalled, validated against the
//     current schema, unmarshalled into a new value and marshalled again,
//     which must give the same JSON.
//
// One name per Go type and one Go type per name are enforced when
// registering. Run Check in a test or at start-up.
func (r *Registry) Check() error {
	s := r.load()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.byName)) {
		t := s.byName[name]
		if t.goType == nil {
			errs = append(errs, fmt.Errorf("schema: %q has schemas (v%s) but no Go type: bind one with schema.Register", name, versionList(t)))
			continue
		}
		for _, n := range slices.Sorted(maps.Keys(t.versions)) {
			chain := true
			for i := n; i < t.current; i++ {
				if t.upcasts[i] == nil {
					errs = append(errs, fmt.Errorf("schema: %q v%d cannot be read: no upcaster from v%d to v%d", name, n, i, i+1))
					chain = false
					break
				}
			}
			if chain && n < t.current {
				errs = append(errs, t.upcastSamples(n)...)
			}
		}
		for _, n := range slices.Sorted(maps.Keys(t.upcasts)) {
			if t.versions[n] == nil {
				errs = append(errs, fmt.Errorf("schema: %q has an upcaster from v%d, which is not registered", name, n))
			}
		}
		errs = append(errs, t.roundTrip()...)
	}
	return errors.Join(errs...)
}

// roundTrip checks t's Go type against its current schema.
func (t *eventType) roundTrip() []error {
	samples, zero := t.samples, len(t.samples) == 0
	if zero {
		samples = []any{reflect.Zero(t.goType).Interface()}
	}
	var errs []error
	for i, v := range samples {
		what := fmt.Sprintf("sample %d of %s", i+1, t.goType)
		if zero {
			what = "the zero value of " + t.goType.String()
		}
		data, err := marshal(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("schema: %q: %s does not marshal: %w", t.name, what, err))
			continue
		}
		if err := t.versions[t.current].check(t.name, data); err != nil {
			hint := ""
			if zero {
				hint = " (if the schema requires fields, add a valid value with Registry.Sample)"
			}
			errs = append(errs, fmt.Errorf("schema: %q: %s is not valid against its own schema%s: %w", t.name, what, hint, err))
			continue
		}
		p := reflect.New(t.goType)
		if err := unmarshal(data, p.Interface()); err != nil {
			errs = append(errs, fmt.Errorf("schema: %q: %s does not unmarshal: %w", t.name, what, err))
			continue
		}
		again, err := marshal(p.Interface())
		if err != nil {
			errs = append(errs, fmt.Errorf("schema: %q: %s does not marshal after a round trip: %w", t.name, what, err))
			continue
		}
		if !bytes.Equal(data, again) {
			errs = append(errs, fmt.Errorf("schema: %q: %s does not round-trip: %s became %s", t.name, what, data, again))
		}
	}
	return errs
}

func versionList(t *eventType) string {
	var b strings.Builder
	for i, n := range slices.Sorted(maps.Keys(t.versions)) {
		if i > 0 {
			b.WriteString(", v")
		}
		fmt.Fprint(&b, n)
	}
	return b.String()
}

// CheckReport is what CheckEvents found.
type CheckReport struct {
	// Checked is the number of events read.
	Checked int
	// Failed is the number of events that could not be decoded.
	Failed int
	// Failures holds the first failures, in the order the events were
	// read; at most the maxFailures passed to CheckEvents.
	Failures []EventFailure
}

// EventFailure is one stored event that does not decode.
type EventFailure struct {
	// Event is the event as read.
	Event eventstore.Event
	// Err says why it does not decode, as Decode would.
	Err error
}

// CheckEvents decodes every event of events, as Decode would but also
// validating each against its own version's schema and current events
// against the current schema: a dry run of an upgrade (new schemas, new
// upcasters) on real data, with nothing written. It reads to the end,
// counting every failure but keeping only the first maxFailures (100 when
// maxFailures is zero or less) in the report.
//
// events is the caller's source of stored events, for example a loop over
// (*eventstore.Store).ReadAll pages. An error from it, or ctx ending,
// stops the check and is returned with the report so far.
func (r *Registry) CheckEvents(ctx context.Context, events iter.Seq2[eventstore.Event, error], maxFailures int) (CheckReport, error) {
	if maxFailures <= 0 {
		maxFailures = 100
	}
	var rep CheckReport
	for e, err := range events {
		if err != nil {
			return rep, fmt.Errorf("schema: check events: read after %d events: %w", rep.Checked, err)
		}
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("schema: check events: %w", err)
		}
		rep.Checked++
		if err := r.checkEvent(e); err != nil {
			rep.Failed++
			if len(rep.Failures) < maxFailures {
				rep.Failures = append(rep.Failures, EventFailure{Event: e, Err: err})
			}
		}
	}
	return rep, nil
}

// checkEvent decodes e strictly.
func (r *Registry) checkEvent(e eventstore.Event) error {
	t, data, err := r.load().currentJSON(e, true)
	if err != nil {
		return err
	}
	if err := unmarshal(data, reflect.New(t.goType).Interface()); err != nil {
		return fmt.Errorf("schema: decode %q v%d into %s: %w", t.name, e.SchemaVersion, t.goType, err)
	}
	return nil
}
