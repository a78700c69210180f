package schema

import (
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

var formatSeeds = []string{
	"2026-03-14T15:09:26Z", "2026-03-14t15:09:26.123456789+05:30", "2024-02-29T00:00:00-00:00",
	"2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-03-14T24:00:00Z", "2016-12-31T23:59:60Z",
	"2026-03-14T15:09:26.Z", "2026-03-14T15:09:26+5:30", "2026-03-14", "2026-04-31", "0000-01-01",
	"ada@example.com", "a.b+c@x-y.example", ".a@b", "a..b@c", "a@-b.c", "a@b-.c", "a@b..c", "a@", "@b",
	`"q"@b.c`, "a@[127.0.0.1]", "é@b.c", "a@b.c.", "123e4567-e89b-12d3-a456-426614174000",
	"123e4567e89b12d3a456426614174000", "123E4567-E89B-12D3-A456-42661417400G", "",
}

// The fast format checks never accept what the validator's refuse.
func FuzzFastFormats(f *testing.F) {
	for _, s := range formatSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkFastFormats(t, s) })
}

func TestFastFormats(t *testing.T) {
	for _, s := range formatSeeds {
		checkFastFormats(t, s)
	}
	// And they accept the ordinary values, or the fast path would not be
	// fast for them.
	for format, s := range map[string]string{
		"date-time": "2026-03-14T15:09:26.5+01:00", "date": "2024-02-29",
		"email": "ada.lovelace+orders@mail.example.com", "uuid": "123e4567-e89b-12d3-a456-426614174000",
	} {
		if !fastFormats[format](s) {
			t.Errorf("fast %s refuses %q", format, s)
		}
	}
}

func checkFastFormats(t *testing.T, s string) {
	t.Helper()
	for name, fast := range fastFormats {
		if fast(s) && !jsonschema.Formats[name](s) {
			t.Fatalf("fast %s accepts %q, the validator refuses it", name, s)
		}
	}
}
