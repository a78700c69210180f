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

	"github.com/strata-go/strata/internal/failure"
	"github.com/strata-go/strata/internal/tlsprobe"
	"github.com/strata-go/strata/outbox"
)

// security is what the publisher's Config and the SubscriberConfig say of
// TLS and credentials.
type security struct {
	TLS                                           *tls.Config
	User, Password, CredentialsFile, NKeySeedFile string
}

func (c Config) security() security {
	return security{c.TLS, c.User, c.Password, c.CredentialsFile, c.NKeySeedFile}
}

func (c SubscriberConfig) security() security {
	return security{c.TLS, c.User, c.Password, c.CredentialsFile, c.NKeySeedFile}
}

// securityOptions turns the TLS and credential fields into nats.go
// options.
func securityOptions(c security) []nats.Option {
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

// connectError explains a failed first connection: a refusal of the
// credentials or of the TLS handshake matches outbox.ErrAuth.
func connectError(url string, c security, err error) error {
	err = failure.Auth(err, isAuth)
	if !errors.Is(err, outbox.ErrAuth) && c.TLS != nil {
		if tlsErr := probeTLS(url, c.TLS); tlsErr != nil {
			err = failure.Auth(fmt.Errorf("%w (the TLS handshake: %w)", err, tlsErr), nil)
		}
	}
	return err
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
	return fmt.Sprintf("natsjs.Config{SubjectPerStream:%v AutoProvision:%v TLS:%v User:%q Password:%q CredentialsFile:%q NKeySeedFile:%q NatsOptions:%d PublishOptions:%d}",
		c.SubjectPerStream, c.AutoProvision, c.TLS != nil, c.User, mask(c.Password), c.CredentialsFile, c.NKeySeedFile, len(c.NatsOptions), len(c.PublishOptions))
}

// String describes the configuration without its secrets, as
// Config.String does.
func (c SubscriberConfig) String() string {
	return fmt.Sprintf("natsjs.SubscriberConfig{Durable:%q SubjectPerStream:%v AutoProvision:%v MaxAckPending:%d AckWait:%s TLS:%v User:%q Password:%q CredentialsFile:%q NKeySeedFile:%q NatsOptions:%d}",
		c.Durable, c.SubjectPerStream, c.AutoProvision, c.MaxAckPending, c.AckWait, c.TLS != nil, c.User, mask(c.Password), c.CredentialsFile, c.NKeySeedFile, len(c.NatsOptions))
}

// mask hides a password.
func mask(password string) string {
	if password == "" {
		return ""
	}
	return "xxxxx"
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
