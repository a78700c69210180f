//go:build race

package dashboard_test

// raceEnabled: the race detector slows template execution several times,
// so timings are logged but not checked.
const raceEnabled = true
