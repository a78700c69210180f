package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/strata-go/strata/internal/humantime"
	"html/template"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// funcs are the templates' functions. None returns template.HTML: every
// value a page shows goes through html/template's escaping.
func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"visible": visible,
		"age":     age,
		"num":     num,
		"rate":    func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
		"when":    func(t time.Time) string { return when(t) },
		"ago":     func(t time.Time) string { return age(s.cfg.Now().Sub(t)) },
		"pretty":  pretty,
		"ms":      func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) },
		"short":   func(v fmt.Stringer) string { return short(v.String()) },
		"add":     func(a, b int) int { return a + b },
	}
}

// visible shows s as it is when it is valid UTF-8 of printable characters,
// else as a quoted Go string literal, so that a name cannot hide or
// reorder text (bidi overrides, zero-width or control characters). HTML
// escaping comes after, from the template.
func visible(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
		i += n
	}
	return s
}

// age prints a duration rounded for people (humantime.Age).
func age(d time.Duration) string { return humantime.Age(d) }

// num prints n with thin separators of thousands: 12 345 678.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u2009")
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return num(n) + " " + many
}

// when prints a time in UTC with milliseconds.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// pretty indents a JSON document for reading; what is not JSON is shown
// as it is.
func pretty(data []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		return string(data)
	}
	return b.String()
}

// short cuts an ID to its first 8 characters, for tables.
func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
