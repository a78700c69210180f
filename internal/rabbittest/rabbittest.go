// Package rabbittest starts a private RabbitMQ node for tests that need
// one configured differently from the shared broker (an AMQPS listener
// with client certificates, a user of its own), without touching the
// shared node: its own node name, ports, configuration file and
// database directory in the test's temporary directory.
//
// Contract: the node is killed (its process group) and its directory
// removed when the test ends; without the rabbitmq-server script the
// test is skipped, unless CI is "true": then it fails. Starting a node
// takes several seconds (Erlang boot, a fresh Mnesia database).
package rabbittest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Script is where Start looks for rabbitmq-server unless
// STRATA_RABBITMQ_SERVER names another file.
const Script = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// Config configures a private node: an AMQPS listener only (no plaintext
// one), requiring a client certificate of CAFile's CA, and one user.
type Config struct {
	// CertFile, KeyFile and CAFile are the server's certificate and key
	// and the CA of the client certificates it accepts. Required.
	CertFile, KeyFile, CAFile string
	// User and Password are the node's only user (administrator of the
	// default virtual host). Required.
	User, Password string
}

// Node is a running private RabbitMQ node.
type Node struct {
	// Port is the AMQPS port on 127.0.0.1.
	Port int
	// Host is the listener's host name as clients should dial it.
	Host string
}

// URL is the AMQPS URL of the node for user and password.
func (n *Node) URL(user, password string) string {
	u := url.URL{Scheme: "amqps", User: url.UserPassword(user, password), Host: fmt.Sprintf("%s:%d", n.Host, n.Port), Path: "/"}
	return u.String()
}

// Start starts a node configured by cfg and returns once its AMQPS
// listener accepts connections.
func Start(tb testing.TB, cfg Config) *Node {
	tb.Helper()
	script := os.Getenv("STRATA_RABBITMQ_SERVER")
	if script == "" {
		script = Script
	}
	if _, err := os.Stat(script); err != nil {
		msg := fmt.Sprintf("rabbittest: no rabbitmq-server at %s (set STRATA_RABBITMQ_SERVER): %v", script, err)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	dir := tb.TempDir()
	port, dist := freePort(tb), freePort(tb)
	conf := strings.Join([]string{
		"listeners.tcp = none",
		fmt.Sprintf("listeners.ssl.default = 127.0.0.1:%d", port),
		"ssl_options.cacertfile = " + cfg.CAFile,
		"ssl_options.certfile = " + cfg.CertFile,
		"ssl_options.keyfile = " + cfg.KeyFile,
		"ssl_options.verify = verify_peer",
		"ssl_options.fail_if_no_peer_cert = true",
		"ssl_options.versions.1 = tlsv1.3",
		"ssl_options.versions.2 = tlsv1.2",
		"default_user = " + cfg.User,
		"default_pass = " + cfg.Password,
		"loopback_users = none",
		"auth_mechanisms.1 = PLAIN",
		"auth_mechanisms.2 = AMQPLAIN",
	}, "\n") + "\n"
	files := map[string]string{"rabbitmq.conf": conf, "enabled_plugins": "[].\n", "rabbitmq-env.conf": ""}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	node := "strata_test_" + hex.EncodeToString(b[:]) + "@localhost"
	cmd := exec.Command(script)
	cmd.Env = append(os.Environ(),
		"RABBITMQ_NODENAME="+node,
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", port),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", dist),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
		"HOME="+dir, // its own Erlang cookie
	)
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: the script starts the Erlang VM as a child,
	// and the clean-up must end both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("rabbittest: start %s: %v", script, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
			return &Node{Port: port, Host: "127.0.0.1"}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "stdout"))
			tb.Fatalf("rabbittest: the node exited: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "stdout"))
			tb.Fatalf("rabbittest: no AMQPS listener after 90s\n%s", log)
		}
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
