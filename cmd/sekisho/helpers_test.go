package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pglocal"
	"github.com/sekisho/sekisho/internal/pgtest"
	"github.com/sekisho/sekisho/internal/store"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// sekishoBinary builds the real binary once per test run.
func sekishoBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sekisho-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sekisho")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// gatewayDir prepares a state directory: the upstream password file and
// the given accounts (password NAME-password-1).
func gatewayDir(t *testing.T, upstreamPassword string, accounts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "up.pw"), []byte(upstreamPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for name, role := range accounts {
		v, err := identity.NewVerifier(name + "-password-1")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.AddUser(t.Context(), store.User{Name: name, Role: role, Verifier: v, Expires: time.Now().Add(time.Hour), Created: time.Now(), CreatedBy: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// upstreamLine is one upstreams: entry for a test database.
func upstreamLine(c *pglocal.Cluster, db string) string {
	return fmt.Sprintf("  - {database: %s, host: %s, port: %d, user: %s, password_file: up.pw, tls: disable}\n", db, c.Host, c.Port, c.User)
}

// startServe runs "sekisho serve" on cfgPath, stopped at cleanup.
func startServe(t *testing.T, cfgPath string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(sekishoBinary(t), "serve", "--config", cfgPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	return cmd
}

// connectWhenUp connects once the gateway accepts, or fails after 20 s.
func connectWhenUp(t *testing.T, url string) *pgconn.PgConn {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		conn, err := pgconn.Connect(t.Context(), url)
		if err == nil {
			t.Cleanup(func() { conn.Close(context.Background()) })
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway never accepted: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRunning waits until n backends run exactly query upstream (direct).
func waitRunning(t *testing.T, direct *pgconn.PgConn, query string, n int, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		r, err := direct.Exec(t.Context(), fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE query = '%s'", query)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if string(r[0].Rows[0][0]) == fmt.Sprint(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCLI runs the sekisho binary with stdin and returns its combined
// output.
func runCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(sekishoBinary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "SUDO_USER=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// testGateway is a gateway's configuration for a test: its database,
// state directory, config file and ports (the gateway is not started).
type testGateway struct {
	c                 *pglocal.Cluster
	db, dir, cfgPath  string
	pgPort, loginPort int
}

// loginGatewayConfig writes the config of a gateway with the login API
// in a fresh state directory with the given accounts: listen and login
// addresses on free ports (loginOpts goes inside login: {...}), body (the
// roles and any other top-level sections) and the test database.
func loginGatewayConfig(t *testing.T, accounts map[string]string, loginOpts, body string) testGateway {
	t.Helper()
	c, db := pgtest.NewDatabase(t)
	g := testGateway{c: c, db: db, dir: gatewayDir(t, c.Password, accounts)}
	g.pgPort, _ = pglocal.FreePort()
	g.loginPort, _ = pglocal.FreePort()
	g.cfgPath = filepath.Join(g.dir, "sekisho.yaml")
	cfg := fmt.Sprintf("state_dir: state\ncontact: dpo@example.jp\nlisten: {address: 127.0.0.1:%d}\nlogin: {address: 127.0.0.1:%d%s}\n%s\nupstreams:\n%s",
		g.pgPort, g.loginPort, loginOpts, strings.TrimRight(body, "\n"), upstreamLine(c, db))
	if err := os.WriteFile(g.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// auditLog reads the gateway's audit file once every wanted string is in
// it, or after 5 s: the running gateway writes events in batches
// (audit.flush_every), so an event may reach the file a little after the
// action that caused it has returned.
func auditLog(t *testing.T, dir string, wants ...string) string {
	t.Helper()
	path := filepath.Join(dir, "state", "audit.jsonl")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		missing := false
		for _, w := range wants {
			if !strings.Contains(string(b), w) {
				missing = true
				break
			}
		}
		if !missing || time.Now().After(deadline) {
			return string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
