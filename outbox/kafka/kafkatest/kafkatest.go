// Package kafkatest runs a Kafka cluster inside a test process, so that
// code publishing or consuming through package kafka meets the real Kafka
// protocol without an outside server: produce with idempotence, fetch,
// consumer groups and their rebalances, offsets, compression codecs.
//
// The cluster is franz-go's kfake (github.com/twmb/franz-go/pkg/kfake): a
// Kafka-protocol implementation for tests, not a production broker. Its
// speed says nothing about a real cluster's.
//
//	c := kafkatest.Start(t, nil) // stopped when the test ends
//	pub, err := kafka.NewPublisher(c.Addrs(), nil)
//
// Outside a test (an Example, a demo) use New and Close.
//
// Stop and Restart take the whole cluster down (its listeners closed, every
// client connection cut) and bring it back on the same ports with the same
// data, as an outage of every broker would; BytesIn counts what clients
// sent, for measuring compression on the wire.
package kafkatest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config configures a test cluster. The zero value (or nil) means every
// default.
type Config struct {
	// Brokers is the number of brokers. Default 3.
	Brokers int
	// Partitions is the number of partitions of a topic the cluster
	// creates on first use (topics are created automatically). Default 6.
	Partitions int
	// Options are more kfake options, applied after the defaults.
	Options []kfake.Opt
}

// Cluster is a running test cluster. Its methods are safe for concurrent
// use.
type Cluster struct {
	opts []kfake.Opt
	dir  string

	mu      sync.Mutex
	kc      *kfake.Cluster // nil while stopped
	ports   []int
	conns   map[net.Conn]struct{}
	bytesIn atomic.Int64
	cut     atomic.Bool // unreachable: connections are refused
}

// Start starts a cluster that is closed when the test ends; it fails the
// test if the cluster cannot start.
func Start(tb testing.TB, cfg *Config) *Cluster {
	tb.Helper()
	c, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// New starts a cluster. It keeps its data in a temporary directory, so
// that Restart finds it again; Close removes it.
func New(cfg *Config) (*Cluster, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Brokers <= 0 {
		c.Brokers = 3
	}
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	dir, err := os.MkdirTemp("", "kafkatest-")
	if err != nil {
		return nil, fmt.Errorf("kafkatest: %w", err)
	}
	cl := &Cluster{dir: dir, conns: map[net.Conn]struct{}{}}
	cl.opts = append([]kfake.Opt{
		kfake.NumBrokers(c.Brokers),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(c.Partitions),
		kfake.DataDir(cl.dir),
		kfake.ListenFn(cl.listen),
	}, c.Options...)
	if err := cl.start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("kafkatest: start cluster: %w", err)
	}
	return cl, nil
}

// Close stops the cluster and removes its data.
func (c *Cluster) Close() {
	c.Stop()
	_ = os.RemoveAll(c.dir)
}

func (c *Cluster) start() error {
	opts := c.opts
	if c.ports != nil {
		opts = append(append([]kfake.Opt(nil), opts...), kfake.Ports(c.ports...))
	}
	kc, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	ports := make([]int, 0, 3)
	for _, a := range kc.ListenAddrs() {
		_, p, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(p)
		ports = append(ports, n)
	}
	c.mu.Lock()
	c.kc, c.ports = kc, ports
	c.mu.Unlock()
	return nil
}

// Addrs returns the brokers' host:port addresses (the same after a
// Restart).
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.ports))
	for i, p := range c.ports {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return out
}

// Kfake returns the running kfake cluster, for its fault controls (Fault,
// ControlKey, MoveTopicPartition, …); nil while stopped.
func (c *Cluster) Kfake() *kfake.Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kc
}

// Stop takes every broker down: the listeners close, every client
// connection is cut, the data is kept. Stopping a stopped cluster does
// nothing.
func (c *Cluster) Stop() {
	c.mu.Lock()
	kc := c.kc
	c.kc = nil
	c.mu.Unlock()
	if kc == nil {
		return
	}
	kc.Close()
	c.cutAll()
}

// Restart brings a stopped cluster back on the same ports with the data it
// had. Restarting a running cluster does nothing.
func (c *Cluster) Restart() error {
	c.mu.Lock()
	running := c.kc != nil
	c.mu.Unlock()
	if running {
		return nil
	}
	if err := c.start(); err != nil {
		return fmt.Errorf("kafkatest: restart cluster: %w", err)
	}
	return nil
}

// SetUnreachable(true) cuts every client connection and refuses new ones
// (each is closed as soon as it is accepted), while the brokers keep
// running with their data: a network partition between the clients and
// the whole cluster. SetUnreachable(false) ends it.
func (c *Cluster) SetUnreachable(cut bool) {
	c.cut.Store(cut)
	if cut {
		c.cutAll()
	}
}

// cutAll closes every client connection.
func (c *Cluster) cutAll() {
	c.mu.Lock()
	conns := make([]net.Conn, 0, len(c.conns))
	for conn := range c.conns {
		conns = append(conns, conn)
	}
	c.mu.Unlock()
	for _, conn := range conns {
		_ = conn.Close()
	}
}

// BytesIn returns how many bytes clients have sent to the brokers so far:
// requests on the wire, compressed record batches included.
func (c *Cluster) BytesIn() int64 { return c.bytesIn.Load() }

// listen is kfake's listener function: the listener counts what clients
// send and remembers its connections, so Stop can cut them.
func (c *Cluster) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: listen %s: %w", addr, err)
	}
	return &listener{Listener: ln, c: c}, nil
}

type listener struct {
	net.Listener
	c *Cluster
}

func (l *listener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: conn, c: l.c}
	if l.c.cut.Load() {
		_ = conn.Close() // the broker sees a client that went away at once
	}
	l.c.mu.Lock()
	l.c.conns[cc] = struct{}{}
	l.c.mu.Unlock()
	return cc, nil
}

type countingConn struct {
	net.Conn
	c *Cluster
}

func (cc *countingConn) Read(b []byte) (int, error) {
	n, err := cc.Conn.Read(b)
	cc.c.bytesIn.Add(int64(n))
	return n, err
}

func (cc *countingConn) Close() error {
	cc.c.mu.Lock()
	delete(cc.c.conns, cc)
	cc.c.mu.Unlock()
	return cc.Conn.Close()
}
