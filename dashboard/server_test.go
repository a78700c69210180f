package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-go/strata/dashboard"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

// serve starts the dashboard on a loopback test server, its sampler
// running, until the test ends.
func serve(t *testing.T, store *eventstore.Store, cfg *dashboard.Config) (*dashboard.Server, *httptest.Server) {
	t.Helper()
	srv := dashboard.New(store, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv, ts
}

func get(t *testing.T, c *http.Client, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// waitParked waits until the fraud check has parked order-1002's event
// and returns its dead letter.
func waitParked(t *testing.T, sh *shop) eventstore.DeadLetter {
	t.Helper()
	var dl eventstore.DeadLetter
	pgtest.WaitFor(t, "order-1002 parked", 60*time.Second, func() bool {
		dls, err := sh.store.DeadLetters(context.Background(), "projection:fraud_check")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dls {
			if d.StreamID == "order-1002" {
				dl = d
				return true
			}
		}
		return false
	})
	return dl
}

func TestPagesRender(t *testing.T) {
	sh := newShop(t, 3)
	dl := waitParked(t, sh)
	_, ts := serve(t, sh.store, &dashboard.Config{Registry: sh.reg, Actions: true, SampleInterval: 50 * time.Millisecond})
	c := ts.Client()
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{"projection:order_summary", "outbox:relay", "pubsub/notification/shop.payment", "Problems", "dead letter"}},
		{"/dead-letters", []string{"order-1002", "fraud check: card issuer &lt;b&gt;declined&lt;/b&gt;"}},
		{"/dead-letters/" + itoa(dl.ID), []string{"Parked followers", "Retry this stream", "OrderPlaced"}},
		{"/streams", []string{"notification-1003"}},
		{"/streams?id=order-1000", []string{"As the application reads it (upcast)", "&#34;total_cents&#34;: 1250", "schema v1"}},
		{"/events?category=order", []string{"order-1003", "OrderPlaced"}},
		{"/trace?id=corr-1001", []string{"OrderPlaced", "PaymentCompleted", "ConfirmationSent", "└─ ConfirmationSent"}},
	} {
		// Pages that read the log as a gap-safe reader does may wait on
		// any transaction open on the server: read them again until a
		// deadline.
		var resp *http.Response
		var body string
		var missing []string
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, body = get(t, c, ts.URL+tc.path)
			missing = missing[:0]
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					missing = append(missing, w)
				}
			}
			if resp.StatusCode == 200 && len(missing) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if resp.StatusCode != 200 || len(missing) > 0 {
			t.Errorf("GET %s: %s, missing %q in\n%s", tc.path, resp.Status, missing, body)
			continue
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
	}
	for _, path := range []string{"/streams?id=nope-1", "/trace?id=nope", "/dead-letters/999999"} {
		if resp, _ := get(t, c, ts.URL+path); resp.StatusCode != 404 {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestStreamPaging(t *testing.T) {
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	var evs []eventstore.NewEvent
	for i := 1; i <= 60; i++ {
		evs = append(evs, eventstore.NewEvent{Type: "Ticked", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)})
	}
	if _, err := store.Append(context.Background(), "clock-1", eventstore.NoStream, evs...); err != nil {
		t.Fatal(err)
	}
	_, ts := serve(t, store, nil)
	versions := regexp.MustCompile(`data-version="(\d+)"`)
	older := regexp.MustCompile(`id="older" href="/streams\?id=clock-1&amp;before=(\d+)"`)
	path := "/streams?id=clock-1"
	var pages [][]string
	for range 5 {
		resp, body := get(t, ts.Client(), ts.URL+path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		var vs []string
		for _, m := range versions.FindAllStringSubmatch(body, -1) {
			vs = append(vs, m[1])
		}
		pages = append(pages, vs)
		m := older.FindStringSubmatch(body)
		if m == nil {
			break
		}
		path = "/streams?id=clock-1&before=" + m[1]
	}
	if len(pages) != 3 || len(pages[0]) != 25 || pages[0][0] != "60" || pages[0][24] != "36" ||
		pages[1][0] != "35" || pages[1][24] != "11" || len(pages[2]) != 10 || pages[2][0] != "10" || pages[2][9] != "1" {
		t.Errorf("pages of versions, newest first: %v", pages)
	}
}
