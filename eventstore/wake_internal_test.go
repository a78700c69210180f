package eventstore

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/strata-go/strata/internal/pgtest"
)

// silencer is a TCP proxy to the test server that can silence one
// connection: from then on it forwards nothing either way and keeps both
// sockets open, as a dropped network path or a failed-over server behind
// a NAT does. Neither end notices.
type silencer struct {
	ln       net.Listener
	mu       sync.Mutex
	silenced map[int]bool // by the port of the proxy's side of the upstream connection
	conns    []net.Conn
}

func newSilencer(t *testing.T, target string) *silencer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := &silencer{ln: ln, silenced: map[int]bool{}}
	t.Cleanup(func() {
		ln.Close()
		sp.mu.Lock()
		defer sp.mu.Unlock()
		for _, c := range sp.conns {
			c.Close()
		}
	})
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			port := up.LocalAddr().(*net.TCPAddr).Port
			sp.mu.Lock()
			sp.conns = append(sp.conns, down, up)
			sp.mu.Unlock()
			go sp.pipe(down, up, port)
			go sp.pipe(up, down, port)
		}
	}()
	return sp
}

func (sp *silencer) pipe(from, to net.Conn, port int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			to.Close()
			return
		}
		sp.mu.Lock()
		silent := sp.silenced[port]
		sp.mu.Unlock()
		if silent {
			continue
		}
		if _, err := to.Write(buf[:n]); err != nil {
			from.Close()
			return
		}
	}
}

func (sp *silencer) silence(port int) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.silenced[port] = true
}

// wakeTest is a store whose connections go through a silencer, with a
// wake-up subscriber registered.
type wakeTest struct {
	t     *testing.T
	s     *Store
	admin *pgxpool.Pool // straight to the server
	sp    *silencer
	wake  <-chan struct{}
}

func newWakeTest(t *testing.T) *wakeTest {
	t.Helper()
	db := pgtest.New(t)
	cfg := pgtest.Config(t)
	sp := newSilencer(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(sp.ln.Addr().(*net.TCPAddr).Port)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := New(pool, &Config{Schema: db.Schema, ListenerPing: 500 * time.Millisecond})
	wake, release := s.wakeups(context.Background())
	t.Cleanup(release)
	return &wakeTest{t: t, s: s, admin: db.Pool, sp: sp, wake: wake}
}

// listener returns the backend PID and client port of the store's LISTEN
// connection, waiting until there is one other than not (0: any).
func (w *wakeTest) listener(not int) (pid, port int) {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := w.admin.QueryRow(context.Background(), `SELECT pid, client_port FROM pg_stat_activity
			WHERE application_name = $1 AND pid <> $2 AND state = 'idle'`, w.s.listenerName(), not).Scan(&pid, &port)
		if err == nil {
			return pid, port
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("no LISTEN connection (other than backend %d) after 20s: %v", not, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// appendWakes appends an event and fails unless the subscriber is woken
// within a few seconds.
func (w *wakeTest) appendWakes() {
	w.t.Helper()
	for len(w.wake) > 0 {
		<-w.wake
	}
	if _, err := w.s.Append(context.Background(), "w-1", Any, NewEvent{Type: "Tick", Data: []byte(`{}`)}); err != nil {
		w.t.Fatal(err)
	}
	select {
	case <-w.wake:
	case <-time.After(5 * time.Second):
		w.t.Fatal("an append did not wake the subscriber within 5s")
	}
}

// TestListenerReconnectsAfterItsBackendIsKilled: the LISTEN connection's
// backend is terminated (an administrator, a failover); the listener
// reconnects and later appends wake subscribers again.
func TestListenerReconnectsAfterItsBackendIsKilled(t *testing.T) {
	t.Parallel()
	w := newWakeTest(t)
	pid, _ := w.listener(0)
	w.appendWakes()
	var killed bool
	if err := w.admin.QueryRow(context.Background(), `SELECT pg_terminate_backend($1)`, pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d): %v %v", pid, killed, err)
	}
	w.listener(pid)
	w.appendWakes()
}

// TestListenerReconnectsAfterItsConnectionFallsSilent: the LISTEN
// connection stops carrying anything, without an error on either end. The
// listener must find out (a round trip after ListenerPing of silence) and
// reconnect, so that later appends wake subscribers again instead of
// leaving them to their PollInterval.
func TestListenerReconnectsAfterItsConnectionFallsSilent(t *testing.T) {
	t.Parallel()
	w := newWakeTest(t)
	pid, port := w.listener(0)
	w.appendWakes()
	w.sp.silence(port)
	w.listener(pid)
	w.appendWakes()
}
