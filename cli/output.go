package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/strata-go/strata/internal/humantime"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/strata-go/strata/eventstore"
)

// timeLayout prints times in UTC with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeLayout)
}

// formatAge prints a duration rounded for people (humantime.Age).
func formatAge(d time.Duration) string { return humantime.Age(d) }

// Everything the CLI prints that it did not write itself — stream IDs,
// types, metadata, payloads, subscription and owner names, stored errors,
// the text of any error — can hold bytes that a terminal obeys rather than
// shows: ESC and CSI sequences that move the cursor or recolour the screen,
// OSC 8 links, C1 controls, bidi overrides (U+202E) that reorder what
// follows. It reaches the terminal only through display, displayText or
// escapeJSON, which agree on one rule, printable.

// printable reports whether r may reach a terminal as it is: a letter,
// mark, number, punctuation or symbol, or the ASCII space (unicode.IsPrint).
// Control characters (C0, DEL, C1), format characters (bidi overrides and
// isolates, zero-width joiners), line and paragraph separators, other
// spaces, private-use, surrogate and unassigned code points are not.
func printable(r rune) bool { return unicode.IsPrint(r) }

// display renders one value for a terminal line: s itself when it is valid
// UTF-8 made only of printable characters (readable text stays as it is),
// else s as a double-quoted Go string literal, every other character
// escaped (\x1b, \u202e, \xff for a byte that is not UTF-8).
func display(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || !printable(r) {
			return strconv.Quote(s)
		}
		i += n
	}
	return s
}

// displayText renders a message that may run over several lines (an
// error's text): each line as display renders it, tabs first turned into
// spaces, so that a multi-line error stays readable.
func displayText(s string) string {
	if display(s) == s {
		return s
	}
	lines := strings.Split(strings.ReplaceAll(s, "\t", "    "), "\n")
	for i, l := range lines {
		lines[i] = display(l)
	}
	return strings.Join(lines, "\n")
}

// escapeJSON returns the JSON text b (valid UTF-8, as encoding/json and
// json.Compact write it) with every character that printable refuses
// written as a \uXXXX escape, except the newlines between values: the
// same document, harmless on a terminal. encoding/json escapes C0 controls
// itself but writes C1 controls and bidi overrides raw.
func escapeJSON(b []byte) []byte {
	clean := true
	for _, r := range string(b) {
		if r != '\n' && !printable(r) {
			clean = false
			break
		}
	}
	if clean {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for _, r := range string(b) {
		switch {
		case r == '\n' || printable(r):
			out = utf8.AppendRune(out, r)
		case r > 0xFFFF:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
	}
	return out
}

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = display(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// writeJSON writes v as indented JSON, safe for a terminal (escapeJSON).
func writeJSON(w io.Writer, v any) error {
	return newJSONEncoder(w, "  ").Encode(v)
}

// newJSONEncoder returns an encoder whose output goes through escapeJSON.
func newJSONEncoder(w io.Writer, indent string) *json.Encoder {
	enc := json.NewEncoder(jsonWriter{w})
	enc.SetIndent("", indent)
	enc.SetEscapeHTML(false)
	return enc
}

// jsonWriter passes each JSON document encoding/json writes (one Write per
// Encode) through escapeJSON.
type jsonWriter struct{ w io.Writer }

func (j jsonWriter) Write(p []byte) (int, error) {
	if _, err := j.w.Write(escapeJSON(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// jsonEvent is an event as printed by --json.
type jsonEvent struct {
	ID            string            `json:"id"`
	StreamID      string            `json:"stream_id"`
	Version       int64             `json:"version"`
	Position      string            `json:"position"`
	Type          string            `json:"type"`
	SchemaVersion int               `json:"schema_version"`
	Data          json.RawMessage   `json:"data"`
	CorrelationID string            `json:"correlation_id,omitempty"`
	CausationID   string            `json:"causation_id,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	RecordedAt    time.Time         `json:"recorded_at"`
	// Principal and DBRole say who appended the event (see
	// eventstore.Audit); absent when unknown.
	Principal string `json:"principal,omitempty"`
	DBRole    string `json:"db_role,omitempty"`
}

func toJSONEvent(e eventstore.Event) jsonEvent {
	return jsonEvent{
		ID: e.ID.String(), StreamID: e.StreamID, Version: e.Version, Position: e.Position.String(),
		Type: e.Type, SchemaVersion: e.SchemaVersion, Data: json.RawMessage(e.Data),
		CorrelationID: e.Metadata.CorrelationID, CausationID: e.Metadata.CausationID,
		Metadata: e.Metadata.Values, RecordedAt: e.RecordedAt.UTC(),
	}
}

// compactData prints an event's JSON payload on one line, safe for a
// terminal.
func compactData(data []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil || !utf8.Valid(b.Bytes()) {
		return display(string(data))
	}
	return string(escapeJSON(b.Bytes()))
}

// eventLine is the one-line text form of an event (events tail).
func eventLine(e eventstore.Event) string {
	return fmt.Sprintf("%s  %-14s  %s@%d  %s  %s", formatTime(e.RecordedAt), e.Position, display(e.StreamID), e.Version,
		typeName(e), compactData(e.Data))
}

// typeName is the event type (for a terminal) with its schema version
// when it is not 1.
func typeName(e eventstore.Event) string {
	if e.SchemaVersion > 1 {
		return fmt.Sprintf("%s/v%d", display(e.Type), e.SchemaVersion)
	}
	return display(e.Type)
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
