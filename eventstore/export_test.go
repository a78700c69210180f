package eventstore

// CombinerStats returns how many appends the store's combiner sent in
// combined statements, and how many such statements it sent.
func CombinerStats(s *Store) (appends, statements int64) {
	if s.comb == nil {
		return 0, 0
	}
	return s.comb.combined.Load(), s.comb.statements.Load()
}
