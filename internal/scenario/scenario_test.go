package scenario_test

import (
	"testing"

	"github.com/strata-go/strata/internal/scenario"
)

func TestDiff(t *testing.T) {
	got := scenario.Diff("a\nb\nc\n", "a\nx\nc\nd\n")
	want := "    a\n  - b\n  + x\n    c\n  + d\n"
	if got != want {
		t.Errorf("Diff:\n%s\nwant:\n%s", got, want)
	}
	if got := scenario.Diff("", ""); got != "" {
		t.Errorf("Diff of nothing = %q", got)
	}
}

func TestValueAndIndent(t *testing.T) {
	type placed struct{ ID string }
	if got, want := scenario.Value(placed{"42"}), "scenario_test.placed {\n  \"ID\": \"42\"\n}"; got != want {
		t.Errorf("Value = %q, want %q", got, want)
	}
	if got, want := scenario.Value(nil), "<nil> null"; got != want {
		t.Errorf("Value(nil) = %q, want %q", got, want)
	}
	if got := scenario.Value(func() {}); got[:7] != "func() " {
		t.Errorf("Value of a func = %q", got)
	}
	if got, want := scenario.Indent("a\nb\n", "(none)"), "    a\n    b\n"; got != want {
		t.Errorf("Indent = %q, want %q", got, want)
	}
	if got, want := scenario.Indent("", "(none)"), "    (none)\n"; got != want {
		t.Errorf("Indent of nothing = %q, want %q", got, want)
	}
}
