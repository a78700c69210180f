package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strata-go/strata/eventstore"
)

// eventView is an event as the pages show it.
type eventView struct {
	eventstore.Event
	Pretty    string      // the payload, indented
	Upcast    string      // the payload as the application decodes it (with a Registry)
	UpcastErr string      // why it does not decode
	Values    [][2]string // the metadata's free pairs, by key
	Prefix    string      // the dashboard's links
}

func (s *Server) view(e eventstore.Event) eventView {
	v := eventView{Event: e, Pretty: pretty(e.Data), Prefix: s.cfg.Prefix}
	for k, val := range e.Metadata.Values {
		v.Values = append(v.Values, [2]string{k, val})
	}
	slices.SortFunc(v.Values, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	if reg := s.cfg.Registry; reg != nil {
		decoded, err := reg.Decode(e)
		if err == nil {
			var b []byte
			b, err = json.MarshalIndent(decoded, "", "  ")
			v.Upcast = string(b)
		}
		if err != nil {
			v.UpcastErr = err.Error()
		}
	}
	return v
}

// streamPageSize is how many events a stream page shows.
const streamPageSize = 25

// streamPage is the data of stream.html.
type streamPage struct {
	page
	ID      string
	Version int64
	Events  []eventView // newest first
	Older   int64       // the "before" of the next page back (0: none)
	Newer   int64       // the "before" of the page forward (0: none)
	Recent  []string    // recently written streams, when no ID is asked for
}

func (s *Server) streamPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	p := streamPage{page: s.page(r, "Streams"), ID: q.Get("id")}
	if p.ID == "" {
		last, err := s.store.ReadLast(ctx, 200, eventstore.Filter{})
		if err != nil {
			s.fail(w, r, statusOf(err), err)
			return
		}
		for _, e := range slices.Backward(last.Events) {
			if !slices.Contains(p.Recent, e.StreamID) && len(p.Recent) < 25 {
				p.Recent = append(p.Recent, e.StreamID)
			}
		}
		s.render(w, r, "stream.html", p)
		return
	}
	p.Title = "Stream " + visible(p.ID)
	v, err := s.store.StreamVersion(ctx, p.ID)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("stream %q has no events", p.ID))
		return
	}
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	p.Version = v
	before := v + 1
	if b, err := strconv.ParseInt(q.Get("before"), 10, 64); err == nil && b > 1 && b <= v {
		before = b
	}
	from := max(1, before-streamPageSize)
	for e, err := range s.store.ReadStream(ctx, p.ID, from) {
		if err != nil {
			s.fail(w, r, statusOf(err), err)
			return
		}
		if e.Version >= before {
			break
		}
		p.Events = append(p.Events, s.view(e))
	}
	slices.Reverse(p.Events)
	if from > 1 {
		p.Older = from
	}
	if before <= v {
		p.Newer = min(before+streamPageSize, v+1)
	}
	s.render(w, r, "stream.html", p)
}

// eventsPage is the data of events.html.
type eventsPage struct {
	page
	Categories string
	Types      string
	Limit      int
	Events     []eventView // newest first
	Next       string      // where the live tail starts
}

// maxEventsPage is the most events the log page shows at once.
const maxEventsPage = 500

func parseFilter(r *http.Request) eventstore.Filter {
	q := r.URL.Query()
	return eventstore.Filter{Categories: splitList(q.Get("category")), Types: splitList(q.Get("type"))}
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// eventsPage shows the newest events of the log, of some categories or
// types, and follows it (live.js, through /events/live).
func (s *Server) eventsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := parseFilter(r)
	p := eventsPage{page: s.page(r, "Events"), Categories: strings.Join(f.Categories, ","), Types: strings.Join(f.Types, ","), Limit: 50}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n > 0 {
		p.Limit = min(n, maxEventsPage)
	}
	last, err := s.store.ReadLast(r.Context(), p.Limit, f)
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	for _, e := range slices.Backward(last.Events) {
		p.Events = append(p.Events, s.view(e))
	}
	p.Next = last.Next.String()
	s.render(w, r, "events.html", p)
}

// liveEvent is one event sent to the live tail: live.js builds its row
// with textContent, never as HTML.
type liveEvent struct {
	Position      string `json:"position"`
	StreamID      string `json:"stream_id"`
	Version       int64  `json:"version"`
	Type          string `json:"type"`
	SchemaVersion int    `json:"schema_version"`
	RecordedAt    string `json:"recorded_at"`
	Data          string `json:"data"`
	Correlation   string `json:"correlation_id,omitempty"`
}

// livePoll is how often the live tail reads the log for new events, and
// liveHeartbeat how often it writes a comment to keep the connection up.
const (
	livePoll      = 300 * time.Millisecond
	liveHeartbeat = 15 * time.Second
	maxLiveData   = 400
)

// live streams the events committed after ?after (server-sent events),
// those the filter selects, in log order, until the client goes away. It
// reads the whole log from its position as a gap-safe reader does and
// filters here, so each poll costs what was appended since the last.
func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f := parseFilter(r)
	// A reconnecting EventSource says where it was (the id of the last
	// event it received), so that nothing is shown twice.
	from := r.URL.Query().Get("after")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		from = id
	}
	after, err := eventstore.ParsePosition(from)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	poll := time.NewTicker(livePoll)
	defer poll.Stop()
	beat := time.Now()
	for {
		page, err := s.store.ReadAll(ctx, after, 500)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("dashboard: live tail", "err", err)
				fmt.Fprintf(w, "event: failure\ndata: %s\n\n", strings.ReplaceAll(err.Error(), "\n", " "))
				_ = rc.Flush()
			}
			return
		}
		for _, e := range page.Events {
			if !selects(f, e) {
				continue
			}
			data := string(e.Data)
			if len(data) > maxLiveData {
				data = strings.ToValidUTF8(data[:maxLiveData], "") + "…"
			}
			b, _ := json.Marshal(liveEvent{Position: e.Position.String(), StreamID: e.StreamID, Version: e.Version, Type: e.Type,
				SchemaVersion: e.SchemaVersion, RecordedAt: when(e.RecordedAt), Data: data, Correlation: e.Metadata.CorrelationID})
			fmt.Fprintf(w, "id: %s\nevent: event\ndata: %s\n\n", e.Position, b)
		}
		after = page.Next
		wrote := len(page.Events) > 0
		if time.Since(beat) > liveHeartbeat {
			fmt.Fprint(w, ": heartbeat\n\n")
			wrote = true
		}
		if wrote {
			beat = time.Now()
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if len(page.Events) == 500 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
	}
}

// selects reports whether f keeps e (categories and types).
func selects(f eventstore.Filter, e eventstore.Event) bool {
	return (len(f.Categories) == 0 || slices.Contains(f.Categories, e.Category())) &&
		(len(f.Types) == 0 || slices.Contains(f.Types, e.Type))
}
