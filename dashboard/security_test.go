package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/dashboard"
	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/pgtest"
)

func post(t *testing.T, c *http.Client, u string, form url.Values, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// noRedirect is a client that shows redirects instead of following them.
func noRedirect(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

// retryRequested reports whether any of the subscription's dead letters
// is marked for retry.
func retryRequested(t *testing.T, store *eventstore.Store) bool {
	t.Helper()
	dls, err := store.DeadLetters(context.Background(), "projection:fraud_check")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		if d.RetryRequested {
			return true
		}
	}
	return false
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestActionsNeedFlagTokenConfirmationAndSameOrigin(t *testing.T) {
	sh := newShop(t, 2)
	waitParked(t, sh)
	form := url.Values{"subscription": {"projection:fraud_check"}, "stream": {"order-1002"}, "confirm": {"yes"}}

	// Read-only (the default): no confirmation page, no POST.
	_, ro := serve(t, sh.store, nil)
	if resp, body := get(t, ro.Client(), ro.URL+"/dead-letters/retry?subscription=projection:fraud_check"); resp.StatusCode != 403 || !strings.Contains(body, "actions are disabled") {
		t.Errorf("read-only confirmation page: %s", resp.Status)
	}
	_, body := get(t, ro.Client(), ro.URL+"/dead-letters/1")
	if strings.Contains(body, `id="retry"`) {
		t.Error("a read-only dashboard offers to retry")
	}
	if resp := post(t, ro.Client(), ro.URL+"/dead-letters/retry", form); resp.StatusCode != 403 {
		t.Errorf("read-only POST: %s, want 403", resp.Status)
	}

	_, ts := serve(t, sh.store, &dashboard.Config{Actions: true})
	c := noRedirect(ts.Client())
	_, page := get(t, c, ts.URL+"/dead-letters/retry?subscription=projection:fraud_check&stream=order-1002")
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the confirmation page:\n%s", page)
	}
	token := m[1]
	for _, tc := range []struct {
		what string
		form url.Values
		hdr  []string
		code int
	}{
		{"no CSRF token", form, nil, 403},
		{"a wrong CSRF token", with(form, "csrf", token+"x"), nil, 403},
		{"not confirmed", with(with(form, "csrf", token), "confirm", ""), nil, 400},
		{"from another site", with(form, "csrf", token), []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"from another origin", with(form, "csrf", token), []string{"Origin", "https://evil.example"}, 403},
	} {
		if resp := post(t, c, ts.URL+"/dead-letters/retry", tc.form, tc.hdr...); resp.StatusCode != tc.code {
			t.Errorf("POST with %s: %s, want %d", tc.what, resp.Status, tc.code)
		}
		if retryRequested(t, sh.store) {
			t.Fatalf("POST with %s marked a dead letter for retry", tc.what)
		}
	}
	// Another Server's token is not this one's.
	_, other := serve(t, sh.store, &dashboard.Config{Actions: true})
	if resp := post(t, noRedirect(other.Client()), other.URL+"/dead-letters/retry", with(form, "csrf", token)); resp.StatusCode != 403 {
		t.Errorf("POST with another server's token: %s, want 403", resp.Status)
	}
	resp := post(t, c, ts.URL+"/dead-letters/retry", with(form, "csrf", token), "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "retried=1") {
		t.Fatalf("confirmed POST: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	pgtest.WaitFor(t, "the retry to be marked or done", 10*time.Second, func() bool {
		dls, err := sh.store.DeadLetters(context.Background(), "projection:fraud_check")
		return err == nil && (len(dls) == 0 || dls[0].RetryRequested || dls[0].Attempts > 2)
	})
}

func with(v url.Values, k, val string) url.Values {
	out := url.Values{}
	for key, vs := range v {
		out[key] = append([]string(nil), vs...)
	}
	out.Set(k, val)
	return out
}

func TestAuthentication(t *testing.T) {
	db := pgtest.New(t)
	store := eventstore.New(db.Pool, &eventstore.Config{Schema: db.Schema})
	_, basic := serve(t, store, &dashboard.Config{Username: "ops", Password: "pa55"})
	_, bearer := serve(t, store, &dashboard.Config{BearerToken: "tok-42"})
	_, both := serve(t, store, &dashboard.Config{Username: "ops", Password: "pa55", BearerToken: "tok-42"})
	basicAuth := func(u, p string) []string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(u, p)
		return []string{"Authorization", r.Header.Get("Authorization")}
	}
	for _, tc := range []struct {
		srv  string
		hdr  []string
		code int
	}{
		{basic.URL, nil, 401},
		{basic.URL, basicAuth("ops", "pa5"), 401},
		{basic.URL, basicAuth("op", "pa55"), 401},
		{basic.URL, basicAuth("ops", "pa55"), 200},
		{basic.URL, []string{"Authorization", "Bearer pa55"}, 401},
		{bearer.URL, nil, 401},
		{bearer.URL, []string{"Authorization", "Bearer tok-4"}, 401},
		{bearer.URL, []string{"Authorization", "Bearer tok-42"}, 200},
		{bearer.URL, basicAuth("ops", "tok-42"), 401},
		{both.URL, []string{"Authorization", "Bearer tok-42"}, 200},
		{both.URL, basicAuth("ops", "pa55"), 200},
		{both.URL, nil, 401},
	} {
		for _, path := range []string{"/", "/assets/app.js", "/events/live"} {
			if path == "/events/live" && tc.code == 200 {
				continue // a stream that does not end: the 401s are what matter here
			}
			resp, _ := get(t, http.DefaultClient, tc.srv+path, tc.hdr...)
			if resp.StatusCode != tc.code {
				t.Errorf("GET %s with %q: %s, want %d", path, tc.hdr, resp.Status, tc.code)
			}
			if resp.StatusCode == 401 && tc.srv == basic.URL && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("401 without a basic challenge: %q", resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
}

// TestNoSecretReachesTheBrowser serves a store whose pool was opened with
// a password in its connection string, and reads every page, error pages
// included: neither the password nor the string is ever in a response.
func TestNoSecretReachesTheBrowser(t *testing.T) {
	db := pgtest.New(t)
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "s3cret-dashb0ard-pw"
	u.User = url.UserPassword(u.User.Username(), secret)
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := eventstore.New(pool, &eventstore.Config{Schema: db.Schema})
	if _, err := store.Append(context.Background(), "order-1", eventstore.NoStream,
		eventstore.NewEvent{Type: "OrderPlaced", Data: []byte(`{}`), Metadata: eventstore.Metadata{CorrelationID: "c-1"}}); err != nil {
		t.Fatal(err)
	}
	_, ts := serve(t, store, &dashboard.Config{Actions: true})
	for _, path := range []string{"/", "/dead-letters", "/dead-letters/1", "/dead-letters/x", "/dead-letters/retry?subscription=x",
		"/streams", "/streams?id=order-1", "/streams?id=%00", "/streams?id=%ff", "/events", "/events?category=order&n=-1",
		"/events/live?after=garbage", "/trace?id=c-1", "/trace?id=%00", "/assets/style.css", "/nope"} {
		resp, body := get(t, ts.Client(), ts.URL+path)
		if strings.Contains(body, secret) || strings.Contains(body, u.String()) {
			t.Errorf("GET %s sent the password to the browser", path)
		}
		for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("GET %s: no %s header", path, h)
			}
		}
		if resp.StatusCode >= 500 {
			t.Errorf("GET %s: %s (bad input is the client's: 4xx)", path, resp.Status)
		}
	}
}
