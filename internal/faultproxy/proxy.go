// Package faultproxy is a TCP proxy for tests that puts faults between a
// client and a PostgreSQL server: it cuts connections at chosen moments of
// the Postgres wire protocol, blackholes them, delays them, and refuses new
// ones.
//
// Contract:
//
//   - Without faults, bytes pass unchanged in both directions, one pair of
//     TCP connections per client connection.
//   - The proxy reads the client's side as the frontend protocol (an
//     untyped startup packet, SSLRequest and GSSENCRequest answered by one
//     untyped byte, then typed messages) and the server's side as the
//     backend protocol, so that a cut falls on a message boundary. Clients
//     must not negotiate TLS through it (sslmode=disable): a connection that
//     does is passed through but never cut by a Cut rule.
//   - A Cut rule fires on a frontend message of one of its Types (or once
//     the client sent AfterBytes bytes). The proxy then forwards the
//     client's bytes up to and including the next Sync or Query message
//     (the message itself when it is one), so that the server has the whole
//     statement and can commit it, and cuts: from that instant not one
//     more byte of the server's reply reaches the client. Then either
//     both connections are closed at once (UpstreamClose: the server may
//     or may not commit), or both once the server has sent ReadyForQuery
//     (UpstreamAfterReply: the statement ran to its end before the client
//     learns anything), or the client's at once and the server's left
//     open, its output discarded, until the server closes it or the proxy
//     is closed (UpstreamHold: the backend may still be running the
//     statement while the client learns it lost its connection).
//   - Blackhole drops every byte in both directions while it is on; the
//     connections stay open. Partition is Blackhole where a client's
//     close does not reach the server either (a half-open connection).
//     Latency delays every chunk it forwards. Refuse closes new
//     connections as soon as they are accepted. CutAll cuts every open
//     connection at once (both sides closed).
//     DropCancels closes connections that carry a CancelRequest without
//     forwarding it: pgx sends one when it loses a connection, and in a
//     real partition it would not get through either.
//   - Other protocols (a broker's) pass through unparsed: Blackhole,
//     Latency, Refuse and CutAll apply to them, Cut rules do not.
//
// It replaces github.com/Shopify/toxiproxy/v2, which the project tried
// first: its toxics are per-direction byte filters with per-link state, so
// none can hold the server's reply to a statement it has just forwarded in
// the other direction, nor tell a Postgres message boundary; and using it
// in-process needs its API server and that server's dependencies.
package faultproxy

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Upstream says what a cut does to the server's side of the connection.
type Upstream int

const (
	// UpstreamClose closes the server's connection right after the
	// statement was forwarded: the server may or may not commit it.
	UpstreamClose Upstream = iota
	// UpstreamAfterReply closes both connections once the server has
	// answered the statement (ReadyForQuery), discarding the answer: the
	// statement ran to its end before the client learns anything, and it
	// never learns how.
	UpstreamAfterReply
	// UpstreamHold leaves the server's connection open, discarding what
	// it sends, until the server closes it or the proxy is closed.
	UpstreamHold
)

// Cut is a rule that cuts connections. The zero Cut never fires.
type Cut struct {
	// Types are the frontend message types that fire the rule ('Q', 'P',
	// 'B', 'E', 'S', …).
	Types string
	// AfterBytes, when positive, fires the rule once a connection has sent
	// that many bytes after its startup.
	AfterBytes int64
	// Probability is the chance that a matching message fires the rule;
	// 0 means 1.
	Probability float64
	// Times is how many cuts the rule makes before it disarms; 0 means
	// no limit.
	Times int
	// Upstream is what happens to the server's connection, or, when
	// Random is set, ignored.
	Upstream Upstream
	// Random picks Upstream at random for each cut.
	Random bool
}

// Proxy forwards TCP connections from its listening address to the
// upstream address, injecting the faults it is told to.
type Proxy struct {
	upstream string
	ln       net.Listener

	mu        sync.Mutex
	conns     map[*conn]struct{}
	cut       *Cut
	cutsLeft  int
	latency   time.Duration
	blackhole bool
	partition bool
	refuse    bool
	noCancel  bool
	closed    bool

	cuts atomic.Int64
	wg   sync.WaitGroup
}

// New starts a proxy on a free loopback port that forwards to upstream
// ("host:port").
func New(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: upstream, ln: ln, conns: map[*conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Host is the proxy's listening host.
func (p *Proxy) Host() string { return "127.0.0.1" }

// Port is the proxy's listening port.
func (p *Proxy) Port() uint16 { return uint16(p.ln.Addr().(*net.TCPAddr).Port) }

// SetCut arms rule c for every connection, replacing the previous rule;
// nil disarms.
func (p *Proxy) SetCut(c *Cut) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c == nil {
		p.cut = nil
		return
	}
	cc := *c
	p.cut, p.cutsLeft = &cc, c.Times
}

// Cuts is the number of cuts made so far (by rules and CutAll).
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

// SetLatency delays every chunk forwarded in either direction by d (0:
// none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.set(func() { p.latency = d })
}

// SetBlackhole drops every byte in both directions while on.
func (p *Proxy) SetBlackhole(on bool) {
	p.set(func() { p.blackhole = on })
}

// SetPartition drops every byte in both directions while on, as
// SetBlackhole does, and also keeps a client's close of its connection
// from the server: the server's side stays open (a half-open connection,
// its output discarded) until the server closes it, CutAll or Close. This
// is a real partition: a client that gives up on a connection meanwhile
// (a context deadline) sends a FIN the server never gets, and the server
// process waits for the client's next message until a keepalive notices,
// hours later.
func (p *Proxy) SetPartition(on bool) {
	p.set(func() { p.partition = on })
}

// SetRefuse closes new connections as soon as they are accepted while on.
func (p *Proxy) SetRefuse(on bool) {
	p.set(func() { p.refuse = on })
}

// SetDropCancels closes, while on, every connection that sends a
// CancelRequest, without forwarding it.
func (p *Proxy) SetDropCancels(on bool) {
	p.set(func() { p.noCancel = on })
}

// set runs f, which sets a field of p, under p's lock.
func (p *Proxy) set(f func()) {
	p.mu.Lock()
	f()
	p.mu.Unlock()
}

// CutAll closes both sides of every open connection.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		p.cuts.Add(1)
		c.closeBoth()
	}
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range conns {
		c.closeBoth()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed || p.refuse {
			p.mu.Unlock()
			client.Close()
			continue
		}
		p.mu.Unlock()
		server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
		if err != nil {
			client.Close()
			continue
		}
		c := &conn{p: p, client: client, server: server}
		c.alive.Store(2)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.closeBoth()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go c.clientToServer()
		go c.serverToClient()
	}
}

// delay waits out the latency set for a chunk read in either direction
// and says whether the chunk is to be dropped (a blackhole or partition).
func (p *Proxy) delay() (blackhole bool) {
	p.mu.Lock()
	latency, blackhole := p.latency, p.blackhole || p.partition
	p.mu.Unlock()
	if latency > 0 {
		time.Sleep(latency)
	}
	return blackhole
}

func (p *Proxy) partitioned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.partition
}

func (p *Proxy) dropCancels() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.noCancel
}

// fire reports whether the armed rule fires on a message of type typ (0:
// a byte count reached), and with which upstream policy.
func (p *Proxy) fire(typ byte, sent int64) (bool, Upstream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.cut
	if c == nil {
		return false, 0
	}
	match := false
	for i := 0; i < len(c.Types); i++ {
		if typ != 0 && c.Types[i] == typ {
			match = true
		}
	}
	if c.AfterBytes > 0 && sent >= c.AfterBytes {
		match = true
	}
	if !match || (c.Probability > 0 && rand.Float64() >= c.Probability) {
		return false, 0
	}
	if c.Times > 0 {
		p.cutsLeft--
		if p.cutsLeft <= 0 {
			p.cut = nil
		}
	}
	up := c.Upstream
	if c.Random {
		up = Upstream(rand.IntN(3))
	}
	return true, up
}

// conn is one proxied connection.
type conn struct {
	p      *Proxy
	client net.Conn
	server net.Conn
	alive  atomic.Int32 // goroutines still running; the last one forgets the conn

	mu       sync.Mutex
	cut      bool     // the client gets nothing more
	upstream Upstream // the cut's policy for the server side
	tls      bool     // TLS negotiated: opaque, never cut by a rule
	oneByte  int      // untyped one-byte answers (to SSLRequest) the server owes
	cutSyncs int      // Sync and Query messages forwarded up to the cut
}

func (c *conn) closeBoth() {
	c.mu.Lock()
	c.cut = true
	c.mu.Unlock()
	c.client.Close()
	c.server.Close()
}

// exit ends one of the conn's two goroutines.
func (c *conn) exit() {
	if c.alive.Add(-1) == 0 {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	}
	c.p.wg.Done()
}

// The untyped requests a client may send before its startup message.
const (
	sslRequest    = 80877103
	gssencRequest = 80877104
	cancelRequest = 80877102
)

func (c *conn) clientToServer() {
	defer c.exit()
	var fr frontendReader
	buf := make([]byte, 32<<10)
	armed := false // a rule fired: forward up to the next Sync or Query, then cut
	var up Upstream
	var sent int64
	syncs := 0
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			blackhole := c.p.delay()
			c.mu.Lock()
			if c.tls {
				fr.opaque = true
			}
			c.mu.Unlock()
			chunk := buf[:n]
			if blackhole {
				chunk = nil
			}
			// Walk the chunk message by message, forwarding up to a cut.
			for i := 0; i < len(chunk); {
				adv, ev := fr.feed(chunk[i:])
				i += adv
				if ev.end && ev.typ == 0 && ev.request == cancelRequest && c.p.dropCancels() {
					c.closeBoth()
					return
				}
				if !ev.end || fr.opaque {
					continue
				}
				if ev.typ == 0 && (ev.request == sslRequest || ev.request == gssencRequest) {
					c.mu.Lock()
					c.oneByte++
					c.mu.Unlock()
				}
				if ev.typ == 0 {
					continue
				}
				sent += int64(ev.size)
				if ev.typ == 'S' || ev.typ == 'Q' {
					syncs++
				}
				if !armed {
					armed, up = c.p.fire(ev.typ, sent)
				}
				if armed && (ev.typ == 'S' || ev.typ == 'Q') {
					// The statement is complete: forward it, and cut.
					// The cut is recorded before the server can answer,
					// so not one byte of the answer reaches the client.
					c.mu.Lock()
					c.cut, c.upstream, c.cutSyncs = true, up, syncs
					c.mu.Unlock()
					c.p.cuts.Add(1)
					_, _ = c.server.Write(chunk[:i])
					switch up {
					case UpstreamClose:
						c.client.Close()
						c.server.Close()
					case UpstreamHold:
						c.client.Close()
					}
					return
				}
			}
			if len(chunk) > 0 {
				if _, werr := c.server.Write(chunk); werr != nil {
					c.closeBoth()
					return
				}
			}
		}
		if err != nil {
			// The client went away: so does the server's side, unless a
			// cut holds it.
			c.mu.Lock()
			if !c.cut && c.p.partitioned() {
				// The FIN is lost in the partition.
				c.cut, c.upstream = true, UpstreamHold
			}
			hold := c.cut && c.upstream != UpstreamClose
			c.mu.Unlock()
			c.client.Close()
			if !hold {
				c.server.Close()
			}
			return
		}
	}
}

func (c *conn) serverToClient() {
	defer c.exit()
	var br backendReader
	buf := make([]byte, 32<<10)
	replies := 0 // ReadyForQuery messages received
	for {
		n, err := c.server.Read(buf)
		if n > 0 {
			blackhole := c.p.delay()
			c.mu.Lock()
			cut, up, cutSyncs := c.cut, c.upstream, c.cutSyncs
			br.oneByte += c.oneByte
			c.oneByte = 0
			c.mu.Unlock()
			chunk := buf[:n]
			replies += br.feed(chunk)
			switch {
			case cut:
				if up == UpstreamAfterReply && replies >= cutSyncs {
					c.server.Close()
					c.client.Close()
					return
				}
			case blackhole:
			default:
				if br.tls {
					c.mu.Lock()
					c.tls = true
					c.mu.Unlock()
				}
				if _, werr := c.client.Write(chunk); werr != nil {
					c.closeBoth()
					return
				}
			}
		}
		if err != nil {
			// The server went away: so does the client's side (closed
			// already, unless a cut waits for the server's answer).
			c.server.Close()
			c.client.Close()
			return
		}
	}
}
