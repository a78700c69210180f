package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

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

// formatAge prints a duration rounded for people: 850ms, 12.3s, 4m12s.
func formatAge(d time.Duration) string {
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
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
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
}

func toJSONEvent(e eventstore.Event) jsonEvent {
	return jsonEvent{
		ID: e.ID.String(), StreamID: e.StreamID, Version: e.Version, Position: e.Position.String(),
		Type: e.Type, SchemaVersion: e.SchemaVersion, Data: json.RawMessage(e.Data),
		CorrelationID: e.Metadata.CorrelationID, CausationID: e.Metadata.CausationID,
		Metadata: e.Metadata.Values, RecordedAt: e.RecordedAt.UTC(),
	}
}

// compactData prints an event's JSON payload on one line.
func compactData(data []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return string(data)
	}
	return b.String()
}

// eventLine is the one-line text form of an event (events tail).
func eventLine(e eventstore.Event) string {
	return fmt.Sprintf("%s  %-14s  %s@%d  %s  %s", formatTime(e.RecordedAt), e.Position, e.StreamID, e.Version,
		typeName(e), compactData(e.Data))
}

// typeName is the event type with its schema version when it is not 1.
func typeName(e eventstore.Event) string {
	if e.SchemaVersion > 1 {
		return fmt.Sprintf("%s/v%d", e.Type, e.SchemaVersion)
	}
	return e.Type
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
