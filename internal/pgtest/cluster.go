package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where StartCluster looks for initdb and pg_ctl, unless
// STRATA_PG_BIN names another directory.
const BinDir = "/usr/lib/postgresql/15/bin"

// Cluster is a private PostgreSQL server that a test starts in a temporary
// directory, on a free loopback port, so that it can stop and restart it
// without touching the shared test server. It runs with fsync off (a test
// may stop it abruptly, but the machine does not crash) and trust
// authentication for the superuser postgres.
type Cluster struct {
	// URL is the connection string of the cluster's postgres database.
	URL string

	bin, dir, data string
	port           int
	cred           *syscall.Credential // the postgres OS user when run as root
	opts           string              // extra server options (-c ...)
}

// ClusterConfig configures a private cluster. The zero value (or nil) is
// StartCluster's cluster.
type ClusterConfig struct {
	// SSL turns the server's TLS on with these files. Default nil: off.
	SSL *ClusterSSL
	// HBA replaces the lines of pg_hba.conf after the first, which always
	// lets the superuser postgres in through the cluster's Unix socket
	// (trust), so that URL keeps working. Default: trust for everyone on
	// the socket and on 127.0.0.1.
	HBA string
	// Setup is SQL run as the superuser once the server is up (creating
	// the roles HBA names, say).
	Setup []string
}

// ClusterSSL names the PEM files of the server's TLS: its certificate and
// key, and the CA whose client certificates it accepts. They are copied
// into the cluster's directory (owned by the server's OS user, the key
// with mode 0600, as PostgreSQL requires).
type ClusterSSL struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// CAFile is the certificate authority for client certificates
	// (ssl_ca_file); empty: none, so cert authentication cannot succeed.
	CAFile string
}

// StartCluster starts a private cluster and stops and removes it when the
// test ends. Without the server binaries it skips the test, unless CI is
// "true": then it fails. Run as root, the server runs as the postgres OS
// user (Postgres refuses to run as root).
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	return StartClusterWith(tb, nil)
}

// StartClusterWith starts a private cluster configured by cfg (nil: as
// StartCluster). With cfg.HBA set, URL connects through the cluster's
// Unix socket (the one way in HBA does not decide); Port and Host give
// the TCP address for the connections HBA is about.
func StartClusterWith(tb testing.TB, cfg *ClusterConfig) *Cluster {
	tb.Helper()
	if cfg == nil {
		cfg = &ClusterConfig{}
	}
	bin := os.Getenv("STRATA_PG_BIN")
	if bin == "" {
		bin = BinDir
	}
	if _, err := os.Stat(filepath.Join(bin, "pg_ctl")); err != nil {
		msg := fmt.Sprintf("pgtest: no PostgreSQL server binaries in %s (set STRATA_PG_BIN): %v", bin, err)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	c := &Cluster{bin: bin}
	dir, err := os.MkdirTemp("", "strata-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	c.dir, c.data = dir, filepath.Join(dir, "data")
	tb.Cleanup(func() {
		_ = c.pgctl("stop", "-m", "immediate")
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("pgtest: running as root needs a postgres OS user to run the server: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	if out, err := c.run("initdb", "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		tb.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
	if cfg.HBA != "" {
		c.URL = fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable", c.dir, c.port)
		hba := "local all postgres trust\n" + cfg.HBA + "\n"
		if err := c.writeFile(filepath.Join(c.data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	if s := cfg.SSL; s != nil {
		c.opts += " -c ssl=on"
		for _, f := range []struct{ src, dst, opt string }{
			{s.CertFile, "server.crt", "ssl_cert_file"},
			{s.KeyFile, "server.key", "ssl_key_file"},
			{s.CAFile, "ca.crt", "ssl_ca_file"},
		} {
			if f.src == "" {
				continue
			}
			b, err := os.ReadFile(f.src)
			if err != nil {
				tb.Fatal(err)
			}
			dst := filepath.Join(c.dir, f.dst)
			if err := c.writeFile(dst, b, 0o600); err != nil {
				tb.Fatal(err)
			}
			c.opts += fmt.Sprintf(" -c %s=%s", f.opt, dst)
		}
	}
	if err := c.Start(); err != nil {
		tb.Fatalf("pgtest: start the private cluster: %v", err)
	}
	if len(cfg.Setup) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.URL)
		if err != nil {
			tb.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, q := range cfg.Setup {
			if _, err := conn.Exec(ctx, q); err != nil {
				tb.Fatalf("pgtest: cluster setup %q: %v", q, err)
			}
		}
	}
	return c
}

// Port is the cluster's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Host is the cluster's TCP host: 127.0.0.1.
func (c *Cluster) Host() string { return "127.0.0.1" }

// writeFile writes a file the server's OS user owns.
func (c *Cluster) writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, b, mode); err != nil {
		return err
	}
	if c.cred != nil {
		return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
	}
	return nil
}

// Start starts the cluster's server and waits until it accepts
// connections.
func (c *Cluster) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200%s", c.port, c.dir, c.opts)
	if err := c.pgctl("start", "-w", "-t", "120", "-l", filepath.Join(c.dir, "log"), "-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("%w\n%s", err, log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.URL)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop stops the server at once (immediate mode: every connection is cut
// and the next start recovers from the WAL, as after a crash).
func (c *Cluster) Stop() error { return c.pgctl("stop", "-w", "-m", "immediate") }

// Restart stops the server at once and starts it again.
func (c *Cluster) Restart() error {
	if err := c.Stop(); err != nil {
		return err
	}
	return c.Start()
}

func (c *Cluster) pgctl(args ...string) error {
	out, err := c.run("pg_ctl", append([]string{"-D", c.data}, args...)...)
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %w\n%s", args, err, out)
	}
	return nil
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// pg_ctl start leaves the server running with its output in the log
	// file; stdout must not be a pipe that outlives the command.
	var out bytes.Buffer
	f, err := os.CreateTemp("", "strata-pg-out-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	_, _ = f.Seek(0, 0)
	_, _ = out.ReadFrom(f)
	return out.Bytes(), err
}
