package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strata-go/strata/eventstore"
	"github.com/strata-go/strata/internal/storeview"
	"github.com/strata-go/strata/schema"
)

// Config configures a Server. The zero value (or nil) is a read-only
// dashboard without authentication, for a loopback listener.
type Config struct {
	// Registry is the application's schema registry. With it, the stream
	// page shows each event's upcast view: the payload decoded and
	// brought to the current version of its type. Default nil: raw
	// payloads only.
	Registry *schema.Registry
	// Actions enables the buttons that change state (retrying dead
	// letters). Each is a POST carrying the page's CSRF token, refused
	// from another origin, asked for on a confirmation page first, and
	// logged. Default false: read-only.
	Actions bool
	// Username and Password, when Username is set, require HTTP basic
	// authentication for every request. Default "": none.
	Username string
	// Password is the basic authentication password (see Username).
	Password string
	// BearerToken, when set, lets requests in with "Authorization: Bearer
	// TOKEN" (besides basic authentication when Username is set too).
	// Default "": none.
	BearerToken string
	// Prefix is the path the Server is mounted at, with a trailing slash,
	// used in every link it writes; the caller strips it before the
	// request reaches ServeHTTP (http.StripPrefix). Default "/".
	Prefix string
	// SampleInterval is how often Run samples every subscription's lag for
	// the charts. Default 5s.
	SampleInterval time.Duration
	// History is how much lag history is kept in memory and charted.
	// Default 1h.
	History time.Duration
	// MaxLag is how many log entries after each partition's checkpoint are
	// examined to count its lag (eventstore.ProbeOptions.MaxLag): a
	// partition further behind shows an estimate from the positions. A
	// sample's cost grows with MaxLag times the partitions that are
	// behind, and not with the log. Default 100.
	MaxLag int64
	// HorizonAge is how long a transaction must have held gap-safe readers
	// back before the overview names it. Default 5s.
	HorizonAge time.Duration
	// Logger receives a line for every action taken and for failed
	// requests. Default: the store's logger.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Server is the dashboard: an http.Handler serving the pages, and a
// sampler (Run) keeping the lag history the overview charts.
type Server struct {
	store *eventstore.Store
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	pages *template.Template
	csrf  string
	cop   *http.CrossOriginProtection
	hist  *history

	running atomic.Int32 // how many Run calls are sampling
}

// New returns a Server reading store. cfg nil means every default.
func New(store *eventstore.Store, cfg *Config) *Server {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Prefix == "" {
		c.Prefix = "/"
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if !strings.HasPrefix(c.Prefix, "/") {
		c.Prefix = "/" + c.Prefix
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = 5 * time.Second
	}
	if c.History <= 0 {
		c.History = time.Hour
	}
	if c.MaxLag <= 0 {
		c.MaxLag = 100
	}
	if c.HorizonAge <= 0 {
		c.HorizonAge = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = storeview.Of(store).Logger
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	s := &Server{
		store: store, cfg: c, log: c.Logger,
		csrf: base64.RawURLEncoding.EncodeToString(b[:]),
		cop:  http.NewCrossOriginProtection(),
		hist: newHistory(c.History, c.SampleInterval),
	}
	s.pages = template.Must(template.New("").Funcs(s.funcs()).ParseFS(templates, "templates/*.html"))
	s.routes()
	return s
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.overview)
	m.HandleFunc("GET /dead-letters", s.deadLetters)
	m.HandleFunc("GET /dead-letters/{id}", s.deadLetter)
	m.HandleFunc("GET /dead-letters/retry", s.confirmRetry)
	m.HandleFunc("POST /dead-letters/retry", s.retry)
	m.HandleFunc("GET /streams", s.streamPage)
	m.HandleFunc("GET /events", s.eventsPage)
	m.HandleFunc("GET /events/live", s.live)
	m.HandleFunc("GET /trace", s.tracePage)
	m.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	s.mux = m
}

// Run samples every subscription's lag each Config.SampleInterval for the
// overview's charts, until ctx ends; it returns nil then. Without Run, the
// overview samples when it is requested (at most once every 2s), so its
// charts have a point per visit. With Run, the overview shows Run's last
// sample and sends no query.
func (s *Server) Run(ctx context.Context) error {
	s.running.Add(1)
	defer s.running.Add(-1)
	t := time.NewTicker(s.cfg.SampleInterval)
	defer t.Stop()
	for {
		if _, err := s.sample(ctx, true); err != nil && ctx.Err() == nil {
			s.log.Warn("dashboard: sample subscriptions", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ServeHTTP serves the dashboard: security headers on every response,
// authentication when configured, cross-origin POSTs refused.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !s.authorized(r) {
		if s.cfg.Username != "" {
			h.Set("WWW-Authenticate", `Basic realm="strata", charset="UTF-8"`)
		}
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if err := s.cop.Check(r); err != nil {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows only the dashboard's own script and style
// files: no inline script or style, no other origin, no framing, and
// forms that post only back to the dashboard. An injected tag would not
// run even if escaping failed.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// render writes the page name with data, or an error page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, data any) {
	var buf strings.Builder
	if err := s.pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.fail(w, r, http.StatusInternalServerError, fmt.Errorf("render %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(buf.String()))
}

// errorPage is the data of error.html.
type errorPage struct {
	page
	Status  int
	Message string
}

// fail shows an error page. Errors come from the store, whose messages
// hold names and positions but never a connection string.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if status >= 500 && !errors.Is(err, context.Canceled) {
		s.log.Warn("dashboard: request failed", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	var buf strings.Builder
	if e := s.pages.ExecuteTemplate(&buf, "error.html", errorPage{page: s.page(r, "Error"), Status: status, Message: err.Error()}); e != nil {
		_, _ = w.Write([]byte(template.HTMLEscapeString(err.Error())))
		return
	}
	_, _ = w.Write([]byte(buf.String()))
}

// page is what every page's layout needs.
type page struct {
	Title   string
	Prefix  string
	Schema  string
	Actions bool
	CSRF    string
	Nav     string
}

func (s *Server) page(r *http.Request, title string) page {
	nav := strings.Trim(r.URL.Path, "/")
	if i := strings.IndexByte(nav, '/'); i >= 0 {
		nav = nav[:i]
	}
	return page{Title: title, Prefix: s.cfg.Prefix, Schema: storeview.Of(s.store).Schema, Actions: s.cfg.Actions, CSRF: s.csrf, Nav: nav}
}
