// Package humantime prints durations for people, the one way the CLI and
// the dashboard both print them.
package humantime

import "time"

// Age prints a duration rounded for people: 850ms, 12.3s, 4m12s; "0s"
// for zero or less.
func Age(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
