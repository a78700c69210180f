//go:build race

package schema_test

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
