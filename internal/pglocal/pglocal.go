// Package pglocal runs a throwaway PostgreSQL server: initdb into a fresh
// directory, start it on a free loopback port, stop it and remove the
// directory. The demo and the test helper (internal/pgtest) both use it.
//
// initdb refuses to run as root, so when the process is root the server is
// run as the "postgres" user, which Debian's packages create.
package pglocal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sekisho/sekisho/internal/pki"
)

// ErrNoServer means no PostgreSQL server binaries were found.
var ErrNoServer = errors.New("no PostgreSQL server binaries found (install postgresql-15, or set PG_BIN to the directory holding initdb and postgres)")

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	Dir      string // holds data/, the socket and server.log
	Host     string
	Port     int
	User     string // superuser name
	Password string // superuser password (random per cluster)

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// Options tune a cluster.
type Options struct {
	// Settings are extra "-c name=value" server settings.
	Settings map[string]string
}

// FindBinDir returns the directory holding initdb and postgres: $PG_BIN,
// the newest /usr/lib/postgresql/*/bin, or the one on PATH.
func FindBinDir() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
		return "", fmt.Errorf("PG_BIN=%s has no initdb: %w", d, ErrNoServer)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNoServer
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start creates and starts a cluster. Stop it with Stop.
func Start(ctx context.Context, opt Options) (*Cluster, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sekisho-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Host: "127.0.0.1", User: "postgres", Password: randomHex(16), exited: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		return nil, err
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if cred != nil {
		for _, p := range []string{dir, data, pwfile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", c.User,
		"--pwfile", pwfile, "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	_ = os.Remove(pwfile)

	// TLS is available (not required) so callers can test encrypted
	// upstream connections against a CA of their own.
	tlsDir := filepath.Join(dir, "tls")
	if err := pki.EnsureCA(tlsDir, []string{"127.0.0.1", "localhost"}); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	if cred != nil {
		for _, p := range []string{tlsDir, filepath.Join(tlsDir, pki.ServerCertFile), filepath.Join(tlsDir, pki.ServerKeyFile)} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
	}

	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": dir,
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"max_connections":         "300",
		"shared_buffers":          "128MB",
		"logging_collector":       "off",
	}
	for k, v := range c.tlsSettings() {
		settings[k] = v
	}
	for k, v := range opt.Settings {
		settings[k] = v
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		c.Port = port
		settings["port"] = strconv.Itoa(port)
		if lastErr = c.launch(ctx, bin, data, cred, settings); lastErr == nil {
			ok = true
			return c, nil
		}
	}
	return nil, lastErr
}

func (c *Cluster) launch(ctx context.Context, bin, data string, cred *syscall.Credential, settings map[string]string) error {
	args := []string{"-D", data}
	for k, v := range settings {
		args = append(args, "-c", k+"="+v)
	}
	logf, err := os.OpenFile(c.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres start: %w", err)
	}
	c.cmd = cmd
	c.exited = make(chan struct{})
	go func() { c.waitErr = cmd.Wait(); close(c.exited) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, c.ConnString("postgres"))
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited during start (%v); log:\n%s", c.waitErr, c.LogTail(2000))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.kill()
			return fmt.Errorf("postgres not ready: %w; log:\n%s", err, c.LogTail(2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) tlsSettings() map[string]string {
	return map[string]string{
		"ssl":           "on",
		"ssl_cert_file": filepath.Join(c.Dir, "tls", pki.ServerCertFile),
		"ssl_key_file":  filepath.Join(c.Dir, "tls", pki.ServerKeyFile),
	}
}

// CAPath is the CA certificate that issued the server's certificate (for
// 127.0.0.1 and localhost).
func (c *Cluster) CAPath() string { return filepath.Join(c.Dir, "tls", pki.CACertFile) }

// ConnString returns a libpq URL for database db as the superuser.
func (c *Cluster) ConnString(db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", c.User, c.Password, c.Host, c.Port, db)
}

// PID is the postmaster's process ID (0 when it is not running).
func (c *Cluster) PID() int {
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// LogPath is the server's log file.
func (c *Cluster) LogPath() string { return filepath.Join(c.Dir, "server.log") }

// LogTail returns at most n bytes from the end of the server log.
func (c *Cluster) LogTail(n int) string {
	b, err := os.ReadFile(c.LogPath())
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Restart stops the server abruptly (as a crash or a failover would) and
// starts it again on the same port.
func (c *Cluster) Restart(ctx context.Context) error {
	bin, err := FindBinDir()
	if err != nil {
		return err
	}
	c.kill()
	cred, err := serverCredential()
	if err != nil {
		return err
	}
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": c.Dir,
		"fsync":                   "off",
		"port":                    strconv.Itoa(c.Port),
		"max_connections":         "300",
	}
	for k, v := range c.tlsSettings() {
		settings[k] = v
	}
	return c.launch(ctx, bin, filepath.Join(c.Dir, "data"), cred, settings)
}

func (c *Cluster) kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	// SIGQUIT is PostgreSQL's immediate shutdown: backends exit at once.
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
	c.cmd = nil
}

// Stop stops the server and removes its directory.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	if c.cmd != nil && c.cmd.Process != nil {
		// SIGINT is "fast" shutdown: roll back and exit cleanly.
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.exited:
			c.cmd = nil
		case <-time.After(10 * time.Second):
			c.kill()
		}
	}
	_ = os.RemoveAll(c.Dir)
}

// serverCredential returns the postgres user's credential when running as
// root, or nil to run as the current user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and initdb refuses root: need a \"postgres\" user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// QuoteIdent quotes a PostgreSQL identifier.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
