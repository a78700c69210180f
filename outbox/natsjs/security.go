package natsjs

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// securityOptions turns Config's TLS and credential fields into nats.go
// options.
func securityOptions(c Config) []nats.Option {
	var opts []nats.Option
	if c.TLS != nil {
		opts = append(opts, nats.Secure(c.TLS))
	}
	if c.User != "" || c.Password != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredentialsFile))
	}
	if c.NKeySeedFile != "" {
		file := c.NKeySeedFile
		opts = append(opts, func(o *nats.Options) error {
			opt, err := nats.NkeyOptionFromSeed(file)
			if err != nil {
				return fmt.Errorf("nkey seed file: %w", err)
			}
			return opt(o)
		})
	}
	return opts
}

// isAuth reports NATS's own refusals of a connection's credentials or
// TLS (the TLS handshake's errors are the failure package's).
func isAuth(err error) bool {
	for _, target := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked,
		nats.ErrAccountAuthExpired, nats.ErrSecureConnRequired, nats.ErrSecureConnWanted, nats.ErrNkeysNotSupported} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// String describes the configuration without its secrets: the password
// is masked, files are named, the TLS configuration is only said to be
// there.
func (c Config) String() string {
	pw := ""
	if c.Password != "" {
		pw = "xxxxx"
	}
	return fmt.Sprintf("natsjs.Config{SubjectPerStream:%v AutoProvision:%v TLS:%v User:%q Password:%q CredentialsFile:%q NKeySeedFile:%q NatsOptions:%d PublishOptions:%d}",
		c.SubjectPerStream, c.AutoProvision, c.TLS != nil, c.User, pw, c.CredentialsFile, c.NKeySeedFile, len(c.NatsOptions), len(c.PublishOptions))
}

// probeTLS explains a first connection that failed without saying why.
// Under TLS 1.3 a server that rejects the client's certificate says so
// only after the client's handshake completed, and nats.go, writing its
// CONNECT first, sees a broken pipe instead of the server's alert. The
// probe repeats the handshake (after the server's plaintext INFO line)
// and reads, so that the alert arrives: it returns the TLS error, or nil
// when the handshake holds (then the first error stands).
func probeTLS(url string, cfg *tls.Config) error {
	first, _, _ := strings.Cut(url, ",")
	u, err := neturl.Parse(strings.TrimSpace(first))
	if err != nil || u.Host == "" {
		return nil
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	conn, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO") || r.Buffered() > 0 {
		return nil
	}
	c := cfg.Clone()
	if c.ServerName == "" {
		c.ServerName = u.Hostname()
	}
	tc := tls.Client(conn, c)
	if err := tc.Handshake(); err != nil {
		return err
	}
	// A server that accepted the certificate waits for CONNECT: the read
	// times out. One that did not sends its alert.
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = tc.Read(make([]byte, 1))
	var netErr net.Error
	if err == nil || (errors.As(err, &netErr) && netErr.Timeout()) {
		return nil
	}
	if strings.Contains(err.Error(), "tls:") {
		return err
	}
	return nil
}
