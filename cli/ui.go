package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-go/strata/dashboard"
)

func (s *session) uiCmd() *cobra.Command {
	var (
		listen   string
		actions  bool
		username string
		noAuth   bool
		sample   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web dashboard: subscriptions and lag, dead letters, streams, live tail, traces",
		Long: `Serve the Strata dashboard (package dashboard) on --listen until
interrupted: every subscription's partitions, state, owner, lag and handled
rate with a chart of the last hour's lag; what holds readers back; dead
letters with their errors and parked followers; streams and their events
(with the upcast view when embedded with a registry); the log by category or
type, followed live; a correlation ID's causal tree and timeline.

It is read-only unless --actions is given: then a dead letter's page can
retry its stream's dead letters, after a confirmation page, with a POST that
carries a CSRF token and is refused from another origin; each action is
logged to stderr.

It listens on loopback by default. To listen elsewhere, require
authentication: --user NAME with the password in STRATA_UI_PASSWORD (HTTP
basic), and/or a token in STRATA_UI_TOKEN ("Authorization: Bearer TOKEN");
--no-auth serves without it (behind a proxy that authenticates). Use TLS in
front of it beyond loopback. The connection string never reaches the
browser.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: s.run(func(ctx context.Context, _ []string) error {
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return usageErr("--listen %q: %v (want HOST:PORT, such as 127.0.0.1:8080)", listen, err)
			}
			password, token := s.cfg.Getenv("STRATA_UI_PASSWORD"), s.cfg.Getenv("STRATA_UI_TOKEN")
			if username != "" && password == "" {
				return usageErr("--user needs the password in STRATA_UI_PASSWORD")
			}
			if username == "" && password != "" {
				return usageErr("STRATA_UI_PASSWORD is set but --user is not")
			}
			if !loopback(host) && username == "" && token == "" && !noAuth {
				return usageErr("--listen %q is not a loopback address: require authentication (--user with STRATA_UI_PASSWORD, or STRATA_UI_TOKEN), or pass --no-auth if a proxy in front authenticates", listen)
			}
			if sample <= 0 {
				return usageErr("--sample must be positive")
			}
			store, err := s.connect(ctx, false)
			if err != nil {
				return err
			}
			srv := dashboard.New(store, &dashboard.Config{
				Registry: s.cfg.Registry, Actions: actions,
				Username: username, Password: password, BearerToken: token,
				SampleInterval: sample, Now: s.cfg.Now,
				Logger: slog.New(slog.NewTextHandler(s.errw, nil)),
			})
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			mode := "read-only"
			if actions {
				mode = "actions enabled"
			}
			fmt.Fprintf(s.out, "Strata dashboard for schema %s on http://%s/ (%s); Ctrl-C to stop\n", display(s.schema), ln.Addr(), mode)
			return serveUntilDone(ctx, ln, srv)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "HOST:PORT to serve on")
	f.BoolVar(&actions, "actions", false, "enable actions (retrying dead letters), each confirmed and logged")
	f.StringVar(&username, "user", "", "require HTTP basic authentication as this user (password in STRATA_UI_PASSWORD)")
	f.BoolVar(&noAuth, "no-auth", false, "allow a non-loopback --listen without authentication")
	f.DurationVar(&sample, "sample", 5*time.Second, "how often to sample every subscription's lag for the charts")
	return cmd
}

// serveUntilDone serves srv on ln, and its sampler, until ctx ends; then
// it stops taking requests and ends those in flight (live tails) within
// a few seconds.
func serveUntilDone(ctx context.Context, ln net.Listener, srv *dashboard.Server) error {
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	sampled := make(chan error, 1)
	go func() { sampled <- srv.Run(ctx) }()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = hs.Shutdown(shut)
		cancel()
		if e := <-served; !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
	}
	<-sampled
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return err
}

// loopback reports whether host (of a --listen address) is a loopback
// address or "localhost": an empty host listens on every interface.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
