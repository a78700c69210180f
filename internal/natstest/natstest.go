// Package natstest starts private nats-server processes for tests that
// need a server configured differently from the shared one (TLS, users),
// on a free loopback port with JetStream in the test's temporary
// directory.
//
// Contract: the server is killed and its directory removed when the test
// ends; without the nats-server binary the test is skipped, unless CI is
// "true": then it fails.
package natstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is where Start looks for nats-server unless STRATA_NATS_SERVER
// names another file.
const Binary = "/usr/sbin/nats-server"

// User is a user of the server's authorization block: a name and password,
// or an NKey (the public key of an NKey pair, "U…").
type User struct {
	Name, Password string
	NKey           string
}

// Config configures a private server. The zero value is a plain server
// with JetStream and no authentication.
type Config struct {
	// CertFile and KeyFile turn TLS on (required of every client) with
	// this server certificate.
	CertFile, KeyFile string
	// CAFile, with CertFile, makes the server require and verify client
	// certificates issued by this CA (verify: true).
	CAFile string
	// Users, if not empty, is the authorization block: only these users
	// may connect.
	Users []User
}

// Server is a running private nats-server.
type Server struct {
	// Port is the client port on 127.0.0.1.
	Port int
	// URL is "tls://127.0.0.1:PORT" with TLS, "nats://127.0.0.1:PORT"
	// without.
	URL string
}

// Start writes cfg as a server configuration file and starts nats-server
// with it, returning once the port accepts connections.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	bin := os.Getenv("STRATA_NATS_SERVER")
	if bin == "" {
		bin = Binary
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("natstest: no nats-server at %s (set STRATA_NATS_SERVER): %v", bin, err)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	dir := tb.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var conf strings.Builder
	fmt.Fprintf(&conf, "listen: 127.0.0.1:%d\nhttp: 0\njetstream { store_dir: %s, max_memory_store: 64MB, max_file_store: 256MB }\n", port, strconv.Quote(filepath.Join(dir, "js")))
	scheme := "nats"
	if cfg.CertFile != "" {
		scheme = "tls"
		fmt.Fprintf(&conf, "tls {\n  cert_file: %s\n  key_file: %s\n", strconv.Quote(cfg.CertFile), strconv.Quote(cfg.KeyFile))
		if cfg.CAFile != "" {
			fmt.Fprintf(&conf, "  ca_file: %s\n  verify: true\n", strconv.Quote(cfg.CAFile))
		}
		conf.WriteString("  timeout: 2\n}\n")
	}
	if len(cfg.Users) > 0 {
		conf.WriteString("authorization {\n  users = [\n")
		for _, u := range cfg.Users {
			if u.NKey != "" {
				fmt.Fprintf(&conf, "    { nkey: %s }\n", strconv.Quote(u.NKey))
			} else {
				fmt.Fprintf(&conf, "    { user: %s, password: %s }\n", strconv.Quote(u.Name), strconv.Quote(u.Password))
			}
		}
		conf.WriteString("  ]\n}\n")
	}
	confFile := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(confFile, []byte(conf.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	logFile := filepath.Join(dir, "server.log")
	cmd := exec.Command(bin, "-c", confFile, "-l", logFile)
	// A test binary killed outright takes its server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("natstest: start nats-server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logFile)
			tb.Fatalf("natstest: nats-server exited: %v\n%s\nconfiguration:\n%s", err, log, conf.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			tb.Fatalf("natstest: nats-server not listening after 30s\n%s", log)
		}
	}
	return &Server{Port: port, URL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)}
}
