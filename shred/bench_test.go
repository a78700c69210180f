package shred_test

// The cost of crypto-shredding, each figure beside the same work without
// personal fields in the same run:
//
//	STRATA_BENCH_ROUNDS=5 go test -run '^$' -bench . -benchtime=2s ./shred/
//
// BenchmarkAppend appends one event per call, of the same payload, as a
// type with two personal fields (sealed: a key lookup and two AES-GCM
// seals) and as a type without (the baseline). BenchmarkRead reads a
// stream of 100 such events (opened: one key lookup and 200 AES-GCM
// opens per read) and decodes each into its Go type, beside the same
// stream of the plain type. Variants run in interleaved rounds; the
// "median" line gives each variant's median rate and the median of its
// per-round ratio to the baseline (x_baseline).

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/schema"
)

// PlainSignup is Signup without personal fields.
type PlainSignup struct {
	Customer string `json:"customer"`
	Email    string `json:"email"`
	Age      int    `json:"age,omitempty"`
	Plan     string `json:"plan"`
}

func benchFixture(b *testing.B) *fixture {
	f := newFixture(b)
	if err := schema.Register[PlainSignup](f.reg, "PlainSignup", 1, []byte(`{"type":"object"}`)); err != nil {
		b.Fatal(err)
	}
	return f
}

// rounds runs the variants (the first is the baseline) in interleaved
// rounds, each reporting events/s, and a final median line with each
// variant's ratio to the baseline.
func rounds(b *testing.B, variants map[string]func(b *testing.B) int, order []string) {
	n := 3
	if s := os.Getenv("STRATA_BENCH_ROUNDS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("STRATA_BENCH_ROUNDS=%q", s)
		}
	}
	rates := map[string][]float64{}
	for r := range n {
		for k := range order {
			name := order[(k+r)%len(order)]
			b.Run(fmt.Sprintf("round=%d/%s", r+1, name), func(b *testing.B) {
				events := variants[name](b)
				rate := float64(events) / b.Elapsed().Seconds()
				b.ReportMetric(rate, "events/s")
				if len(rates[name]) == r {
					rates[name] = append(rates[name], rate)
				} else {
					rates[name][r] = rate
				}
			})
		}
	}
	line := ""
	b.Run("median", func(b *testing.B) {
		b.ReportMetric(0, "ns/op")
		for _, name := range order {
			b.ReportMetric(median(rates[name]), name+"_events/s")
		}
		for _, name := range order[1:] {
			var ratios []float64
			for r := range n {
				ratios = append(ratios, rates[name][r]/rates[order[0]][r])
			}
			b.ReportMetric(median(ratios), name+"_x_baseline")
			line = fmt.Sprintf("%s: %s %.0f events/s = %.2fx baseline (%s %.0f events/s), medians of %d rounds",
				b.Name(), name, median(rates[name]), median(ratios), order[0], median(rates[order[0]]), n)
		}
	})
	fmt.Println(line)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func BenchmarkAppend(b *testing.B) {
	f := benchFixture(b)
	ctx := context.Background()
	appendAs := func(personal bool) func(b *testing.B) int {
		return func(b *testing.B) int {
			for i := range b.N {
				c := "c-" + strconv.Itoa(i%100)
				var v any = PlainSignup{Customer: c, Email: c + "@example.com", Age: 40, Plan: "pro"}
				if personal {
					v = Signup{Customer: c, Email: c + "@example.com", Age: 40, Plan: "pro"}
				}
				ne, err := f.reg.Encode(v)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := f.store.Append(ctx, "bench-"+c, eventstore.Any, ne); err != nil {
					b.Fatal(err)
				}
			}
			return b.N
		}
	}
	rounds(b, map[string]func(*testing.B) int{"plain": appendAs(false), "personal": appendAs(true)}, []string{"plain", "personal"})
}

func BenchmarkRead(b *testing.B) {
	f := benchFixture(b)
	ctx := context.Background()
	for _, personal := range []bool{false, true} {
		var evs []any
		for range 100 {
			if personal {
				evs = append(evs, Signup{Customer: "c-read", Email: "read@example.com", Age: 40, Plan: "pro"})
			} else {
				evs = append(evs, PlainSignup{Customer: "c-read", Email: "read@example.com", Age: 40, Plan: "pro"})
			}
		}
		f.append(b, "read-"+strconv.FormatBool(personal), evs...)
	}
	read := func(personal bool) func(b *testing.B) int {
		stream := "read-" + strconv.FormatBool(personal)
		return func(b *testing.B) int {
			n := 0
			for range b.N {
				for e, err := range f.store.ReadStream(ctx, stream, 0) {
					if err != nil {
						b.Fatal(err)
					}
					if _, err := f.reg.Decode(e); err != nil {
						b.Fatal(err)
					}
					n++
				}
			}
			return n
		}
	}
	rounds(b, map[string]func(*testing.B) int{"plain": read(false), "personal": read(true)}, []string{"plain", "personal"})
}
