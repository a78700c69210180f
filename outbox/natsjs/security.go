package natsjs

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/strata-go/strata/internal/tlsprobe"
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

// probeTLS explains a first connection that failed without saying why
// (see internal/tlsprobe): NATS sends its INFO line in plaintext before
// TLS starts.
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
	_, err = tlsprobe.Handshake(host, cfg, func(r *bufio.Reader) bool {
		line, err := r.ReadString('\n')
		return err == nil && strings.HasPrefix(line, "INFO")
	})
	return err
}
