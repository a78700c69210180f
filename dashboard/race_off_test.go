//go:build !race

package dashboard_test

// raceEnabled: see race_on_test.go.
const raceEnabled = false
