package dashboard_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/strata-go/strata/dashboard"
	"github.com/strata-go/strata/eventstore"
)

// browser starts a headless Chromium (Debian's chromium package) with a
// fresh profile and returns a context that drives one tab of it, until
// the test ends. Without chromium the test fails under CI=true and is
// skipped, saying why, elsewhere.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed: the dashboard's browser tests need it (apt-get install -y chromium; .ci/run installs it)")
		}
		t.Skip("SKIPPED: chromium is not installed, so the dashboard's browser tests did not run (apt-get install -y chromium; under CI=true they fail instead)")
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser, for the whole test.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// step runs actions with a deadline, failing the test with what it was
// doing.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// poll waits until a JavaScript predicate holds in the page.
func poll(t *testing.T, ctx context.Context, what, expr string, d time.Duration) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(d))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

// load navigates to u until the page has an element matching sel: pages
// that read the log as a gap-safe reader does (the streams list, the
// log) may wait on any transaction open on the server, the other test
// packages' included.
func load(t *testing.T, ctx context.Context, u, sel string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		step(t, ctx, "open "+u, chromedp.Navigate(u))
		if eval[bool](t, ctx, `document.querySelector(`+jsString(sel)+`) !== null`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s after 60s", u, sel)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func TestBrowserOverview(t *testing.T) {
	sh := newShop(t, 3)
	waitParked(t, sh)
	// A window of 20s, so that samples 100ms apart are pixels apart.
	_, ts := serve(t, sh.store, &dashboard.Config{SampleInterval: 100 * time.Millisecond, History: 20 * time.Second})
	ctx := browser(t)
	step(t, ctx, "load the overview", chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.ID("subs")))
	// Every subscription has a row, and its lag chart a polyline of
	// several points that the browser drew (a box of some width).
	for _, name := range []string{"projection:order_summary", "outbox:relay", "pubsub/notification/shop.payment", "projection:fraud_check"} {
		sel := `document.querySelector('tbody.sub[data-name="` + name + `"] svg.chart polyline.lagline')`
		poll(t, ctx, "the lag chart of "+name, sel+` && `+sel+`.points.numberOfItems >= 3 && `+sel+`.getBBox().width > 0`, 20*time.Second)
	}
	parts := eval[int](t, ctx, `document.querySelectorAll('tbody.sub[data-name="projection:order_summary"] table.inner tbody tr').length`)
	if parts != 4 {
		t.Errorf("order_summary shows %d partitions, want 4", parts)
	}
	health := eval[string](t, ctx, `document.getElementById('health').textContent`)
	if !strings.Contains(health, "Problems") || !strings.Contains(health, "projection:fraud_check has 1 dead letter") {
		t.Errorf("health: %q", health)
	}
	state := eval[string](t, ctx, `document.querySelector('tbody.sub[data-name="outbox:relay"] .state').textContent`)
	if state != "running" {
		t.Errorf("relay state %q, want running", state)
	}
}

func TestBrowserRetryDeadLetter(t *testing.T) {
	sh := newShop(t, 3)
	dl := waitParked(t, sh)
	var logged bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logged}, nil))
	_, ts := serve(t, sh.store, &dashboard.Config{Actions: true, Logger: logger})
	ctx := browser(t)
	step(t, ctx, "open the dead letters", chromedp.Navigate(ts.URL+"/dead-letters"),
		chromedp.WaitVisible(chromedp.CSS(`tr.dead-letter[data-id="`+itoa(dl.ID)+`"]`)))
	step(t, ctx, "open the parked event", chromedp.Click(chromedp.CSS(`tr.dead-letter[data-id="`+itoa(dl.ID)+`"] td a`)),
		chromedp.WaitVisible(chromedp.ID("dl-error")))
	msg := eval[string](t, ctx, `document.getElementById('dl-error').textContent`)
	if !strings.Contains(msg, "card issuer <b>declined</b>") {
		t.Errorf("the dead letter's error reads %q", msg)
	}
	// The handler works again; the operator retries.
	sh.fraudFails.Store(false)
	step(t, ctx, "ask to retry", chromedp.Click(chromedp.ID("retry")), chromedp.WaitVisible(chromedp.ID("confirm")))
	text := eval[string](t, ctx, `document.getElementById('confirm-text').textContent`)
	if !strings.Contains(text, "1 dead letter of projection:fraud_check, stream order-1002,") {
		t.Errorf("confirmation reads %q", text)
	}
	step(t, ctx, "confirm", chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("notice")))
	// The list refreshes itself until the subscription has run the event.
	poll(t, ctx, "the dead letter to leave the list",
		`document.getElementById('none') !== null && document.querySelectorAll('tr.dead-letter').length === 0`, 60*time.Second)
	dls, err := sh.store.DeadLetters(context.Background(), "")
	if err != nil || len(dls) != 0 {
		t.Fatalf("dead letters after the retry: %v, %v", dls, err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if l := logged.String(); !strings.Contains(l, "dead letters marked for retry") || !strings.Contains(l, "subscription=projection:fraud_check") ||
		!strings.Contains(l, "stream=order-1002") || !strings.Contains(l, "marked=1") {
		t.Errorf("the retry was not logged as it should be: %q", l)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestBrowserLiveTail(t *testing.T) {
	sh := newShop(t, 2)
	_, ts := serve(t, sh.store, nil)
	ctx := browser(t)
	step(t, ctx, "open the order events", chromedp.Navigate(ts.URL+"/events?category=order"), chromedp.WaitVisible(chromedp.ID("live")))
	poll(t, ctx, "the live tail to connect", `document.getElementById('live-state').textContent === 'live'`, 10*time.Second)
	for i := range 3 {
		sh.placeOrder(t, 1100+i)
		id := "order-" + itoa(int64(1100+i))
		// Newest first: the event just appended is the top row.
		poll(t, ctx, id+" on top of the tail",
			`document.querySelector('#live tr:first-child a.stream') !== null && document.querySelector('#live tr:first-child a.stream').textContent === '`+id+`'`,
			60*time.Second)
	}
	rows := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#live tr a.stream')).map(a => a.textContent)`)
	// Each order stream has one event: each appears once, whether it came
	// with the page or through the tail (nothing shown twice, nothing
	// of another category).
	seen := map[string]bool{}
	for _, r := range rows {
		if !strings.HasPrefix(r, "order-") || seen[r] {
			t.Errorf("the tail of category order shows %q (again?): %q", r, rows)
		}
		seen[r] = true
	}
	for _, id := range []string{"order-1000", "order-1001", "order-1002", "order-1100", "order-1101", "order-1102"} {
		if !seen[id] {
			t.Errorf("%s missing from %q", id, rows)
		}
	}
}

func TestBrowserTrace(t *testing.T) {
	sh := newShop(t, 2)
	_, ts := serve(t, sh.store, nil)
	ctx := browser(t)
	step(t, ctx, "open a trace", chromedp.Navigate(ts.URL+"/events?category=order"), chromedp.WaitVisible(chromedp.ID("live")))
	// From an event's stream page, follow its correlation ID.
	step(t, ctx, "open order-1001", chromedp.Navigate(ts.URL+"/streams?id=order-1001"), chromedp.WaitVisible(chromedp.ID("stream-id")))
	step(t, ctx, "follow its correlation", chromedp.Click(chromedp.CSS(`a[href*="trace?id=corr-1001"]`)), chromedp.WaitVisible(chromedp.ID("trace")))
	if n := eval[int](t, ctx, `document.querySelectorAll('#trace circle.tick').length`); n != 3 {
		t.Errorf("the timeline has %d events, want 3", n)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#trace line.hop').length`); n != 2 {
		t.Errorf("the timeline has %d hops from cause to effect, want 2", n)
	}
	text := eval[string](t, ctx, `document.getElementById('trace-text').textContent`)
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "OrderPlaced  order-1001@1") ||
		!strings.HasPrefix(lines[1], "└─ PaymentCompleted  payment-1001@1") ||
		!strings.HasPrefix(lines[2], "   └─ ConfirmationSent  notification-1001@1") {
		t.Errorf("the trace reads\n%s", text)
	}
	labels := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#trace g.node text tspan:first-child')).map(s => s.textContent)`)
	if strings.Join(labels, ",") != "OrderPlaced,PaymentCompleted,ConfirmationSent" {
		t.Errorf("the tree's nodes: %q", labels)
	}
}

// TestBrowserHostileStreamID appends events whose stream ID, metadata and
// payload are HTML and script, and checks every page that shows them
// shows them as text: no element was made from them, no script ran, and
// the text is on the page as written.
func TestBrowserHostileStreamID(t *testing.T) {
	sh := newShop(t, 1)
	const hostile = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">-1`
	const hostileCorr = `"><svg onload="window.__pwned=3">`
	ev := eventstore.NewEvent{ID: uuid.Must(uuid.NewV7()), Type: `<b>Evil</b>`, SchemaVersion: 1,
		Data:     []byte(`{"note":"</pre><script>window.__pwned=4</script>"}`),
		Metadata: eventstore.Metadata{CorrelationID: hostileCorr, Values: map[string]string{"<i>k</i>": "<script>window.__pwned=5</script>"}}}
	raw := eventstore.New(sh.db.Pool, &eventstore.Config{Schema: sh.db.Schema}) // no validator: any type
	if _, err := raw.Append(context.Background(), hostile, eventstore.NoStream, ev); err != nil {
		t.Fatal(err)
	}
	_, ts := serve(t, sh.store, &dashboard.Config{Registry: sh.reg})
	ctx := browser(t)
	clean := func(page string) {
		t.Helper()
		if n := eval[int](t, ctx, `document.querySelectorAll('script').length`); n != 1 {
			t.Errorf("%s: %d script elements, want only the dashboard's own", page, n)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll('img, main svg[onload], b, i').length`); n != 0 {
			t.Errorf("%s: %d elements made from the stored text", page, n)
		}
		if v := eval[string](t, ctx, `String(window.__pwned)`); v != "undefined" {
			t.Errorf("%s: a script ran: window.__pwned = %s", page, v)
		}
	}
	q := url.QueryEscape
	step(t, ctx, "the stream page", chromedp.Navigate(ts.URL+"/streams?id="+q(hostile)), chromedp.WaitVisible(chromedp.ID("stream-id")))
	clean("stream page")
	if got := eval[string](t, ctx, `document.getElementById('stream-id').textContent`); got != hostile {
		t.Errorf("the stream page names the stream %q, want %q", got, hostile)
	}
	body := eval[string](t, ctx, `document.body.textContent`)
	for _, want := range []string{`<b>Evil</b>`, `"note": "</pre><script>window.__pwned=4</script>"`, `<i>k</i>`, `<script>window.__pwned=5</script>`, hostileCorr} {
		if !strings.Contains(body, want) {
			t.Errorf("the stream page does not show %q as text", want)
		}
	}
	load(t, ctx, ts.URL+"/streams", "ul.recent a.stream")
	clean("streams list")
	if n := eval[int](t, ctx, `Array.from(document.querySelectorAll('a.stream')).filter(a => a.textContent === `+jsString(hostile)+`).length`); n != 1 {
		t.Errorf("the streams list shows the hostile ID as text %d times, want 1", n)
	}
	step(t, ctx, "its trace", chromedp.Navigate(ts.URL+"/trace?id="+q(hostileCorr)), chromedp.WaitVisible(chromedp.ID("trace")))
	clean("trace")
	step(t, ctx, "the log, live", chromedp.Navigate(ts.URL+"/events"), chromedp.WaitVisible(chromedp.ID("live")))
	poll(t, ctx, "the live tail to connect", `document.getElementById('live-state').textContent === 'live'`, 10*time.Second)
	if _, err := raw.Append(context.Background(), hostile, eventstore.Any, eventstore.NewEvent{Type: `<b>Evil</b>`, SchemaVersion: 1,
		Data: []byte(`{"x":"<img src=y onerror=window.__pwned=6>"}`)}); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the live hostile event", `document.querySelector('#live tr.new') !== null`, 60*time.Second)
	clean("live tail")
	if got := eval[string](t, ctx, `document.querySelector('#live tr.new a.stream').textContent`); got != hostile {
		t.Errorf("the live tail names the stream %q, want %q", got, hostile)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`)
	return "'" + r.Replace(s) + "'"
}
