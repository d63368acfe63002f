package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pglocal"
	"github.com/sekisho/sekisho/internal/pgtest"
	"github.com/sekisho/sekisho/internal/store"
)

// TestServeReloadAndDrain runs the real binary: SIGHUP adds an upstream
// for new sessions; SIGTERM ends a running session with 57P01 after the
// shutdown timeout, cancels its statement upstream and exits 0.
func TestServeReloadAndDrain(t *testing.T) {
	c, db1 := pgtest.NewDatabase(t)
	_, db2 := pgtest.NewDatabase(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "sekisho")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "up.pw"), []byte(c.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := pglocal.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	upstream := func(db string) string {
		return fmt.Sprintf("  - {database: %s, host: %s, port: %d, user: %s, password_file: up.pw, tls: disable}\n", db, c.Host, c.Port, c.User)
	}
	writeConfig := func(dbs ...string) {
		cfg := fmt.Sprintf("state_dir: state\nlisten: {address: 127.0.0.1:%d, allow_plaintext: true}\nlimits: {shutdown_timeout: 1s}\nroles: {analyst: {networks: [127.0.0.1], databases: [\"*\"]}}\nupstreams:\n", port)
		for _, db := range dbs {
			cfg += upstream(db)
		}
		if err := os.WriteFile(filepath.Join(dir, "sekisho.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(db1)
	st, err := store.OpenSQLite(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := identity.NewVerifier("serve-test-password")
	if err := st.AddUser(t.Context(), store.User{Name: "u", Role: "analyst", Verifier: v, Expires: time.Now().Add(time.Hour), Created: time.Now(), CreatedBy: "test"}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "sekisho.yaml"))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var logLines = make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logLines <- sc.Text()
		}
		close(logLines)
	}()
	waitLine := func(substr string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-logLines:
				if !ok {
					t.Fatalf("sekisho exited before printing %q", substr)
				}
				if strings.Contains(l, substr) {
					return
				}
			case <-timeout:
				t.Fatalf("sekisho did not print %q", substr)
			}
		}
	}
	waitLine("listening on")
	url := func(db string) string {
		return fmt.Sprintf("postgres://u:serve-test-password@127.0.0.1:%d/%s?sslmode=disable", port, db)
	}
	conn, err := pgconn.Connect(t.Context(), url(db1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := pgconn.Connect(t.Context(), url(db2)); err == nil || !strings.Contains(err.Error(), "3D000") {
		t.Fatalf("db2 before reload: %v", err)
	}

	writeConfig(db1, db2)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLine("config reloaded")
	c2, err := pgconn.Connect(t.Context(), url(db2))
	if err != nil {
		t.Fatalf("db2 after reload: %v", err)
	}
	c2.Close(t.Context())

	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)").ReadAll()
		done <- err
	}()
	direct, err := pgconn.Connect(t.Context(), c.ConnString(db1))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	running := func() string {
		r, err := direct.Exec(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return string(r[0].Rows[0][0])
	}
	for deadline := time.Now().Add(10 * time.Second); running() != "1"; {
		if time.Now().After(deadline) {
			t.Fatal("pg_sleep never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "57P01") {
			t.Fatalf("session at SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("session outlived SIGTERM")
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("sekisho exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("sekisho did not exit after SIGTERM")
	}
	for deadline := time.Now().Add(10 * time.Second); running() != "0"; {
		if time.Now().After(deadline) {
			t.Fatal("the statement kept running upstream after the gateway stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
