package humantime_test

import (
	"testing"
	"time"

	"github.com/strata-go/strata/internal/humantime"
)

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                          "0s",
		0:                                     "0s",
		850*time.Millisecond + 400:            "850ms",
		12*time.Second + 340*time.Millisecond: "12.3s",
		4*time.Minute + 12*time.Second + 600*time.Millisecond: "4m13s",
	} {
		if got := humantime.Age(d); got != want {
			t.Errorf("Age(%s) = %q, want %q", d, got, want)
		}
	}
}
