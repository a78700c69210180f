package cli

import (
	"io"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
)

// mask replaces a password.
const mask = "xxxxx"

// redactConn returns the connection string conn with its passwords
// replaced by mask and everything else as written: a URL's userinfo
// password and its password and sslpassword query parameters, a key=value
// string's password and sslpassword values. It finds them by reading conn
// as libpq and pgx do, never by looking for the password's text elsewhere
// (a password such as "0" or "postgres" must not mask a port or a user
// name). A string that is neither form is returned as it is.
func redactConn(conn string) string {
	for _, scheme := range []string{"postgres://", "postgresql://"} {
		if len(conn) >= len(scheme) && strings.EqualFold(conn[:len(scheme)], scheme) {
			return conn[:len(scheme)] + redactURLRest(conn[len(scheme):])
		}
	}
	return redactKeywords(conn, false)
}

// redactURLRest masks the passwords of a connection URL after its scheme.
// The userinfo ends, as libpq and pgx read it, at the first '@' before any
// '/'. A password with an unescaped '@' or '/' makes the URL malformed: an
// '@' left in the host part, or no userinfo but a non-numeric "port" before
// a later '@'. The userinfo then runs to that last '@' — masking more than
// the password, never less.
func redactURLRest(p string) string {
	var b strings.Builder
	end := -1
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		end = i
		host := p[end+1:]
		if k := strings.IndexAny(host, "/?"); k >= 0 {
			host = host[:k]
		}
		if j := strings.LastIndexByte(host, '@'); j >= 0 {
			end += 1 + j
		}
	} else if j := strings.LastIndexByte(p, '@'); j >= 0 {
		netloc := p
		if k := strings.IndexAny(p, "/?"); k >= 0 {
			netloc = p[:k]
		}
		if _, port, ok := strings.Cut(netloc, ":"); ok && strings.Trim(port, "0123456789") != "" {
			end = j
		}
	}
	if end >= 0 {
		user, _, hasPassword := strings.Cut(p[:end], ":")
		b.WriteString(user)
		if hasPassword {
			b.WriteString(":" + mask)
		}
		b.WriteByte('@')
		p = p[end+1:]
	}
	base, query, hasQuery := strings.Cut(p, "?")
	b.WriteString(base)
	if !hasQuery {
		return b.String()
	}
	b.WriteByte('?')
	for i, pair := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		key, _, hasValue := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(key); hasValue && (isPasswordKey(k) || err != nil && isPasswordKey(key)) {
			b.WriteString(key + "=" + mask)
			continue
		}
		b.WriteString(pair)
	}
	return b.String()
}

func isPasswordKey(k string) bool { return k == "password" || k == "sslpassword" }

// passwordKey finds the key of a password setting in key=value form.
var passwordKey = regexp.MustCompile(`(?:^|[^A-Za-z0-9_])((?:ssl)?password)\s*=\s*`)

// redactKeywords masks the value of every password and sslpassword setting
// in s, read as libpq reads a key=value connection string: a value is
// either single-quoted (backslash escapes a character; an unterminated
// quote runs to the end) or runs to the next whitespace. inText says s is
// a message that quotes the setting rather than a connection string: an
// unquoted value then also ends at a double quote or backquote, so that
// the message's own quotes survive.
func redactKeywords(s string, inText bool) string {
	var b strings.Builder
	for {
		m := passwordKey.FindStringSubmatchIndex(s)
		if m == nil {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:m[1]])
		v := s[m[1]:]
		n := valueLen(v, inText)
		if n > 0 {
			b.WriteString(mask)
		}
		s = v[n:]
	}
}

// valueLen is the length of the key=value setting value at the start of v.
func valueLen(v string, inText bool) int {
	if strings.HasPrefix(v, "'") {
		for i := 1; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++
			case '\'':
				return i + 1
			}
		}
		return len(v)
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\':
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			return i
		case inText && (c == '"' || c == '`'):
			return i
		}
	}
	return len(v)
}

// connURL finds connection URLs inside a message.
var connURL = regexp.MustCompile("(?i)postgres(?:ql)?://[^\\s\"`]*")

// redactor masks passwords in what the CLI writes. It knows the connection
// strings of the run (from the arguments and the environment before flags
// are parsed, from the parsed flags after) and replaces each, wherever it
// appears whole, by its redacted form; error texts are read for connection
// strings of their own (text).
type redactor struct {
	mu sync.Mutex
	// known maps each connection string holding a password, as written
	// and as Go-quoted (cobra quotes what it echoes), to its redacted form,
	// longest first.
	known [][2]string
}

func newRedactor() *redactor { return &redactor{} }

// addConn records a connection string (one without a password is ignored).
func (r *redactor) addConn(conn string) {
	red := redactConn(conn)
	if red == conn {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	q, rq := strconv.Quote(conn), strconv.Quote(red)
	for _, kv := range [][2]string{{conn, red}, {q[1 : len(q)-1], rq[1 : len(rq)-1]}} {
		if !slices.Contains(r.known, kv) {
			r.known = append(r.known, kv)
		}
	}
	slices.SortStableFunc(r.known, func(a, b [2]string) int { return len(b[0]) - len(a[0]) })
}

// replaceKnown replaces every known connection string in s.
func (r *redactor) replaceKnown(s string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, kv := range r.known {
		if strings.Contains(s, kv[0]) {
			s = strings.ReplaceAll(s, kv[0], kv[1])
		}
	}
	return s
}

// text returns a message (an error's text, a stored handler error) with
// the passwords of every connection string in it masked: the known ones
// whole, then any URL and any password=… setting it holds.
func (r *redactor) text(s string) string {
	s = r.replaceKnown(s)
	s = connURL.ReplaceAllStringFunc(s, redactConn)
	return redactKeywords(s, true)
}

// writer wraps w so that every known connection string written through it
// is redacted (a string split across two writes would escape it; the CLI
// writes whole lines).
func (r *redactor) writer(w io.Writer) io.Writer { return &redactWriter{r: r, w: w} }

type redactWriter struct {
	r *redactor
	w io.Writer
}

func (rw *redactWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(rw.w, rw.r.replaceKnown(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// cleanError is an error whose text has its passwords masked and is safe
// for a terminal; errors.Is and errors.As still see the original (for
// ExitCode).
type cleanError struct {
	msg string
	err error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }

// message is err's text as the CLI prints it: passwords masked (text),
// and safe for a terminal (displayText).
func (r *redactor) message(err error) string { return displayText(r.text(err.Error())) }

// cleanError returns err with the text message gives it.
func (r *redactor) cleanError(err error) error {
	if err == nil {
		return nil
	}
	msg := r.message(err)
	if msg == err.Error() {
		return err
	}
	return &cleanError{msg: msg, err: err}
}

// cleanTree makes every error that cmd and its subcommands return clean
// (cleanError), for a tree whose errors the embedding program prints
// itself. Arguments are looked at for connection strings before each
// command runs.
func (r *redactor) cleanTree(cmd *cobra.Command) {
	learn := func(args []string) {
		for _, a := range args {
			r.addConn(a)
		}
	}
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error { learn(args); return r.cleanError(check(c, args)) }
	}
	if run := cmd.PersistentPreRunE; run != nil {
		cmd.PersistentPreRunE = func(c *cobra.Command, args []string) error { learn(args); return r.cleanError(run(c, args)) }
	}
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error { learn(args); return r.cleanError(run(c, args)) }
	}
	for _, sub := range cmd.Commands() {
		r.cleanTree(sub)
	}
}
