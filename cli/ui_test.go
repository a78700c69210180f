package cli_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestUIUsage(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"ui", "--listen", "0.0.0.0:0"}, "is not a loopback address: require authentication"},
		{nil, []string{"ui", "--listen", ":0"}, "is not a loopback address"},
		{nil, []string{"ui", "--user", "ops"}, "--user needs the password in STRATA_UI_PASSWORD"},
		{[]string{"STRATA_UI_PASSWORD=pw"}, []string{"ui"}, "STRATA_UI_PASSWORD is set but --user is not"},
		{nil, []string{"ui", "--listen", "localhost"}, "want HOST:PORT"},
		{nil, []string{"ui", "--sample", "0s"}, "--sample must be positive"},
	} {
		r := run(t, cmdEnv(tc.env...), []string{d.secret}, append([]string{"--database-url", d.url, "--schema", d.db.Schema}, tc.args...)...)
		want(t, r, 2)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("strata %v: stderr %q, want %q", tc.args, r.stderr, tc.want)
		}
	}
}

// TestUIServes runs `strata ui` as a process: it prints where it listens,
// serves the pages (behind a bearer token here), never sends the
// connection string's password, and stops cleanly on SIGINT.
func TestUIServes(t *testing.T) {
	t.Parallel()
	d := newTDB(t)
	d.append("order-1", ev("OrderPlaced", `{"n":1}`))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--database-url", d.url, "--schema", d.db.Schema, "ui", "--listen", "127.0.0.1:0", "--sample", "100ms")
	cmd.Env = cmdEnv("STRATA_UI_TOKEN=tok-123")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("first line: %v (stderr %s)", err, stderr.String())
	}
	m := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+/) \(read-only\)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line %q", line)
	}
	base := m[1]
	fetch := func(path, token string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := fetch("", ""); code != 401 {
		t.Errorf("without the token: %d, want 401", code)
	}
	if code, _ := fetch("", "tok-12"); code != 401 {
		t.Errorf("with a wrong token: %d, want 401", code)
	}
	for _, p := range []string{"", "dead-letters", "streams?id=order-1", "events", "trace?id=nope", "streams?id=nope"} {
		code, body := fetch(p, "tok-123")
		if code != 200 && code != 404 {
			t.Errorf("GET /%s: %d\n%s", p, code, body)
		}
		if strings.Contains(body, d.secret) || strings.Contains(body, d.url) {
			t.Errorf("GET /%s sent the connection string or its password to the browser", p)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil {
		t.Errorf("strata ui after SIGINT: %v\nstdout %s\nstderr %s", err, rest, stderr.String())
	}
	if strings.Contains(stderr.String(), d.secret) {
		t.Errorf("strata ui printed the password: %s", stderr.String())
	}
}
