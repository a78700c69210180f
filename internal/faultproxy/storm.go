package faultproxy

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/strata-go/strata/internal/retry"
)

// Storm is a schedule of random faults on a set of proxies, for tests
// that check a component's promises under faults it cannot predict: a Cut
// rule armed for the whole storm, and, at random moments, every
// connection of one proxy cut at once (CutAll) or one proxy blackholed
// for a moment.
//
// A blackhole ends with its proxy's connections cut. Bytes dropped in
// both directions would otherwise leave client and server each waiting
// for a message the other believes it sent, which TCP never does: a short
// partition delays bytes (Latency), and one that outlasts the
// retransmission timeout ends in broken connections.
type Storm struct {
	// Cut is armed on every proxy while the storm lasts; nil arms none.
	// Cut rules apply to Postgres connections only.
	Cut *Cut
	// Interval is the mean time between the storm's other faults (each a
	// CutAll or a blackhole of one proxy, chosen at random); the actual
	// gaps are uniform in [Interval/2, 3*Interval/2]. 0: none.
	Interval time.Duration
	// Blackhole is the longest a blackhole lasts; 0: no blackholes.
	Blackhole time.Duration
}

// StormStats counts the faults a storm injected.
type StormStats struct {
	// Cuts is the number of connections cut, by the rule, CutAll and the
	// end of blackholes, over all the storm's proxies.
	Cuts int64
	// CutAlls is how many times every connection of a proxy was cut at
	// once (blackholes' ends excluded).
	CutAlls int
	// Blackholes is how many blackholes there were.
	Blackholes int
}

// Run injects the storm's faults until ctx ends, then disarms them (the
// rule, any blackhole) and returns what it injected. Other faults set on
// the proxies (Latency, Refuse, DropCancels) are left as they are.
func (s Storm) Run(ctx context.Context, proxies ...*Proxy) (st StormStats) {
	if len(proxies) == 0 {
		<-ctx.Done()
		return st
	}
	before := make([]int64, len(proxies))
	for i, p := range proxies {
		before[i] = p.Cuts()
		if s.Cut != nil {
			p.SetCut(s.Cut)
		}
	}
	defer func() {
		for i, p := range proxies {
			p.SetCut(nil)
			p.SetBlackhole(false)
			st.Cuts += p.Cuts() - before[i]
		}
	}()
	if s.Interval <= 0 {
		<-ctx.Done()
		return st
	}
	for {
		gap := s.Interval/2 + rand.N(s.Interval+1)
		if !retry.Sleep(ctx, gap) {
			return st
		}
		p := proxies[rand.IntN(len(proxies))]
		if s.Blackhole > 0 && rand.IntN(2) == 0 {
			st.Blackholes++
			p.SetBlackhole(true)
			ok := retry.Sleep(ctx, s.Blackhole/4+rand.N(s.Blackhole*3/4+1))
			p.SetBlackhole(false)
			p.CutAll()
			if !ok {
				return st
			}
			continue
		}
		st.CutAlls++
		p.CutAll()
	}
}

// TwoPhaseStorm injects random faults for d: in its first half, statements
// of the Postgres protocol are cut at random with probability cutP (after
// being sent; the server's side closed, closed after its answer, or held
// open) and, at random moments, every connection of one proxy is cut or
// one proxy is blackholed for a moment; in its second half only the random
// cuts go on, so that a server process held for a connection the client
// lost is left to the component under test to deal with (a CutAll would
// end it too).
func TwoPhaseStorm(ctx context.Context, d time.Duration, cutP float64, proxies ...*Proxy) StormStats {
	cut := &Cut{Types: "EQ", Probability: cutP, Random: true}
	sctx, cancel := context.WithTimeout(ctx, d/2)
	defer cancel()
	a := Storm{Cut: cut, Interval: 400 * time.Millisecond, Blackhole: 300 * time.Millisecond}.Run(sctx, proxies...)
	sctx, cancel = context.WithTimeout(ctx, d/2)
	defer cancel()
	b := Storm{Cut: cut}.Run(sctx, proxies...)
	return StormStats{Cuts: a.Cuts + b.Cuts, CutAlls: a.CutAlls + b.CutAlls, Blackholes: a.Blackholes + b.Blackholes}
}
