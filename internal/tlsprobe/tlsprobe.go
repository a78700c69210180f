// Package tlsprobe explains a first connection to a broker that failed
// without saying why. Under TLS 1.3 a server that rejects the client's
// certificate says so only after the client's side of the handshake has
// completed; a client that writes first (a CONNECT, a protocol header)
// then sees a broken pipe or a reset instead of the server's alert. The
// probe repeats the handshake with the same settings and reads, so that
// the alert arrives.
//
// Contract: Handshake returns the TLS error the server or the client's
// own verification raised; otherwise a nil error, with held true when the
// handshake held and the server waits for a request, false when the
// server could not be reached or what failed was not TLS. It never sends
// application data and waits at most about three seconds.
package tlsprobe

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"
)

// Handshake dials addr, lets preamble (if not nil) read what the server
// sends before TLS starts (NATS's INFO line; false: give up), performs
// the TLS handshake with cfg (none when cfg is nil: held then means the
// server accepted the TCP connection), and reads briefly for an alert.
func Handshake(addr string, cfg *tls.Config, preamble func(*bufio.Reader) bool) (held bool, err error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false, nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if preamble != nil {
		r := bufio.NewReader(conn)
		if !preamble(r) || r.Buffered() > 0 {
			return false, nil
		}
	}
	if cfg == nil {
		return true, nil
	}
	c := cfg.Clone()
	if c.ServerName == "" {
		c.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(conn, c)
	if err := tc.Handshake(); err != nil {
		return false, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = tc.Read(make([]byte, 1))
	var netErr net.Error
	if err == nil || (errors.As(err, &netErr) && netErr.Timeout()) {
		return true, nil
	}
	if strings.Contains(err.Error(), "tls:") {
		return false, err
	}
	return false, nil
}
