package eventstore

// CombinerStats returns how many appends the store's combiner sent in
// combined statements, and how many such statements it sent.
func CombinerStats(s *Store) (appends, statements int64) {
	if s.comb == nil {
		return 0, 0
	}
	return s.comb.combined.Load(), s.comb.statements.Load()
}

// CombinerState returns how many statements the store's combiner has on
// their way and how many appends wait in its queue.
func CombinerState(s *Store) (inFlight, queued int) {
	s.comb.mu.Lock()
	defer s.comb.mu.Unlock()
	return s.comb.inFlight, len(s.comb.queue)
}

// SetCombinerInFlight sets how many statements s's combiner sends at once
// (maxInFlight by default).
func SetCombinerInFlight(s *Store, n int) {
	s.comb.mu.Lock()
	defer s.comb.mu.Unlock()
	s.comb.maxInFlight = n
}

// SetCombinerUnpaced turns the pacing of s's combiner off (on: false), so
// that a benchmark compares the two.
func SetCombinerUnpaced(s *Store, on bool) {
	s.comb.mu.Lock()
	defer s.comb.mu.Unlock()
	s.comb.unpaced = on
}

// SetScanFilteredReads makes filtered reads scan the log in windows, as
// before the key indexes (true), or walk the keys (false, the default),
// and returns a function restoring the previous setting.
func SetScanFilteredReads(on bool) (restore func()) {
	was := scanFilteredReads
	scanFilteredReads = on
	return func() { scanFilteredReads = was }
}
