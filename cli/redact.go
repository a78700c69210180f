package cli

import (
	"bytes"
	"io"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"github.com/spf13/cobra"
)

// redactor replaces secrets — the connection string's password — in
// everything the CLI writes. It learns them as they become known: from the
// arguments and the environment before flags are parsed, from the parsed
// connection configuration after.
type redactor struct {
	mu      sync.Mutex
	secrets [][]byte
}

// mask replaces each secret.
var mask = []byte("xxxxx")

func newRedactor() *redactor { return &redactor{} }

// add records a secret (empty strings are ignored).
func (r *redactor) add(secret string) {
	if secret == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.secrets {
		if string(s) == secret {
			return
		}
	}
	r.secrets = append(r.secrets, []byte(secret))
	// Longest first, so that a secret containing another is masked whole.
	for i := len(r.secrets) - 1; i > 0 && len(r.secrets[i]) > len(r.secrets[i-1]); i-- {
		r.secrets[i], r.secrets[i-1] = r.secrets[i-1], r.secrets[i]
	}
}

// dsnPassword finds password=… in a key=value connection string.
var dsnPassword = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// addURL records the password of a connection string, in URL or key=value
// form, as written and as decoded.
func (r *redactor) addURL(conn string) {
	if conn == "" {
		return
	}
	if u, err := url.Parse(conn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			r.add(pw)
			r.add(url.UserPassword("", pw).String()[1:]) // escaped form
		}
	}
	// Parsing may fail on the very string a user mistyped: find the
	// password between ':' and '@' of the authority by hand as well.
	if _, rest, ok := strings.Cut(conn, "://"); ok {
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			if _, pw, ok := strings.Cut(rest[:i], ":"); ok {
				r.add(pw)
				if dec, err := url.PathUnescape(pw); err == nil {
					r.add(dec)
				}
			}
		}
	}
	for _, m := range dsnPassword.FindAllStringSubmatch(conn, -1) {
		pw := m[1]
		r.add(pw)
		if len(pw) >= 2 && pw[0] == '\'' {
			r.add(pw[1 : len(pw)-1])
		}
	}
}

// redact returns p with every secret masked.
func (r *redactor) redact(p []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.secrets {
		if bytes.Contains(p, s) {
			p = bytes.ReplaceAll(p, s, mask)
		}
	}
	return p
}

// writer wraps w so that everything written through it is redacted. A
// secret split across two writes would escape it; the CLI writes whole
// lines.
func (r *redactor) writer(w io.Writer) io.Writer { return &redactWriter{r: r, w: w} }

type redactWriter struct {
	r *redactor
	w io.Writer
}

func (rw *redactWriter) Write(p []byte) (int, error) {
	if _, err := rw.w.Write(rw.r.redact(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// maskedError is an error whose text has its secrets masked; errors.Is and
// errors.As still see the original (for ExitCode).
type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// maskError returns err with every secret masked in its text, learning
// first the passwords of any connection string the text itself contains.
func (r *redactor) maskError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, f := range strings.Fields(msg) {
		if strings.Contains(f, "://") || strings.Contains(f, "password") {
			r.addURL(strings.Trim(f, `"'(),`))
		}
	}
	masked := string(r.redact([]byte(msg)))
	if masked == msg {
		return err
	}
	return &maskedError{msg: masked, err: err}
}

// maskTree makes every error that cmd and its subcommands return masked,
// for a tree whose errors the embedding program prints itself. Arguments
// are looked at for connection strings before each command runs.
func (r *redactor) maskTree(cmd *cobra.Command) {
	learn := func(args []string) {
		for _, a := range args {
			r.addURL(a)
		}
	}
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error { learn(args); return r.maskError(check(c, args)) }
	}
	if run := cmd.PersistentPreRunE; run != nil {
		cmd.PersistentPreRunE = func(c *cobra.Command, args []string) error { learn(args); return r.maskError(run(c, args)) }
	}
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error { learn(args); return r.maskError(run(c, args)) }
	}
	for _, sub := range cmd.Commands() {
		r.maskTree(sub)
	}
}
