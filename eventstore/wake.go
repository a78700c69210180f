package eventstore

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"go.opentelemetry.io/otel/metric"

	"github.com/strata-go/strata/internal/retry"
	"github.com/strata-go/strata/internal/wake"
)

// wakeHub shares one LISTEN connection among all the subscription
// partitions a Store runs in this process, and fans each notification out
// to them through one wake.Hub. The listener runs while anyone holds it
// (a running Subscription holds it for its whole Run, so that a partition
// worker's restart does not close and reopen the connection).
type wakeHub struct {
	fan wake.Hub

	mu     sync.Mutex // guards what follows
	users  int        // holders of the listener
	cancel context.CancelFunc
	done   chan struct{}
	gauge  metric.Registration // the horizon's age, while anyone listens
}

// wakeups registers a waiter: the returned channel receives (without
// blocking the hub; one pending signal at most) whenever the log may have
// grown. The waiter holds the listener until release.
func (s *Store) wakeups(ctx context.Context) (<-chan struct{}, func()) {
	unhold := s.holdListener(ctx)
	ch, cancel, _ := s.shared.hub.fan.Subscribe()
	return ch, func() {
		cancel()
		unhold()
	}
}

// holdListener keeps the store's LISTEN connection up until release: the
// first holder starts it, release by the last stops it and waits for it.
func (s *Store) holdListener(ctx context.Context) (release func()) {
	h := &s.shared.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.users++
	if h.cancel == nil {
		// The listener outlives the first holder's ctx; it is stopped
		// when the last holder releases it, not by ctx.
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		h.cancel, h.done = cancel, make(chan struct{})
		go s.listen(lctx, h.done)
		h.gauge = s.registerHorizon()
	}
	var once sync.Once
	return func() { once.Do(func() { s.unholdListener() }) }
}

func (s *Store) unholdListener() {
	h := &s.shared.hub
	h.mu.Lock()
	h.users--
	var cancel context.CancelFunc
	var done chan struct{}
	var gauge metric.Registration
	if h.users == 0 && h.cancel != nil {
		cancel, done, gauge = h.cancel, h.done, h.gauge
		h.cancel, h.done, h.gauge = nil, nil, nil
	}
	h.mu.Unlock()
	if gauge != nil {
		if err := gauge.Unregister(); err != nil {
			s.cfg.Logger.Warn("strata: could not unregister the horizon gauge", "err", err)
		}
	}
	if cancel != nil {
		cancel()
		<-done
	}
}

// listen holds a dedicated connection (outside the pool) that LISTENs on
// the store's channel, reconnecting with backoff (50ms doubling to 5s, with
// jitter) when it fails or stops answering (see Config.ListenerPing). After
// every (re)connect it wakes everyone, since notifications sent while it
// was away are lost.
func (s *Store) listen(ctx context.Context, done chan struct{}) {
	defer close(done)
	wait := retry.Backoff(50*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, wait.Reset)
		if ctx.Err() != nil {
			return
		}
		d := wait.NextBackOff()
		s.cfg.Logger.Warn("strata: wake-up listener lost its connection; subscribers poll meanwhile", "err", err, "retry_in", d)
		if !sleep(ctx, d) {
			return
		}
	}
}

// listenerName is the application_name of the store's wake-up listener
// connection ("strata listen " and the channel, cut to Postgres's 63 bytes),
// by which pg_stat_activity shows it.
func (s *Store) listenerName() string {
	name := "strata listen " + s.channel()
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}

// listenOnce listens on one connection until it fails; connected is called
// once the connection listens.
func (s *Store) listenOnce(ctx context.Context, connected func()) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	// A wait that times out sets a deadline on the socket and leaves the
	// connection usable (pgx's default; a pool may have configured another).
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	// Named after its channel, so that operators (and tests) can tell the
	// listener in pg_stat_activity, where its last query is a ping.
	cfg.RuntimeParams = maps.Clone(cfg.RuntimeParams)
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = s.listenerName()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, s.sql.expand.Replace(`LISTEN {channel_name}`)); err != nil {
		return err
	}
	// Checkpoint moves, for WaitFor (waitfor.go).
	checkpoints := s.checkpointChannel()
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{checkpoints}.Sanitize()); err != nil {
		return err
	}
	connected()
	s.shared.hub.fan.Broadcast()
	s.shared.waits.wakeAll()
	every := s.cfg.ListenerPing
	for {
		wctx, cancel := context.WithTimeout(ctx, every)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil {
			if n.Channel == checkpoints {
				s.shared.waits.deliver(n.Payload)
			} else {
				s.shared.hub.fan.Broadcast()
			}
			continue
		}
		if ctx.Err() != nil || wctx.Err() == nil || conn.IsClosed() {
			return err
		}
		// Silence for ListenerPing: a connection can die without the
		// socket noticing, so make sure the server still answers.
		pctx, cancel := context.WithTimeout(ctx, every)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("no answer to a ping within %s: %w", every, err)
		}
	}
}

// notify wakes every subscriber of this store, in all processes.
func (s *Store) notify(ctx context.Context, q querier) error {
	_, err := q.Exec(ctx, `SELECT pg_notify($1, '')`, s.channel())
	return err
}

// registerHorizon registers the callback observing MetricHorizonAge (nil
// if it cannot be registered: metrics are not worth failing a
// subscription for).
func (s *Store) registerHorizon() metric.Registration {
	in := s.tel.in
	reg, err := in.Meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		h, err := s.Horizon(ctx, 0)
		if err != nil {
			return err
		}
		age := 0.0
		if h != nil {
			age = h.Age.Seconds()
		}
		o.ObserveFloat64(in.HorizonAge, age)
		return nil
	}, in.HorizonAge)
	if err != nil {
		s.cfg.Logger.Warn("strata: could not register the horizon gauge", "err", err)
		return nil
	}
	return reg
}
