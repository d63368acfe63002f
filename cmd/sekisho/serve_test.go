package main

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sekisho/sekisho/internal/pglocal"
	"github.com/sekisho/sekisho/internal/pgtest"
)

// TestServeReloadAndDrain runs the real binary: SIGHUP adds an upstream
// for new sessions; SIGTERM ends a running session with 57P01 after the
// shutdown timeout, cancels its statement upstream and exits 0.
func TestServeReloadAndDrain(t *testing.T) {
	c, db1 := pgtest.NewDatabase(t)
	_, db2 := pgtest.NewDatabase(t)
	dir := gatewayDir(t, c.Password, map[string]string{"u": "analyst"})
	bin := sekishoBinary(t)
	port, err := pglocal.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	writeConfig := func(dbs ...string) {
		cfg := fmt.Sprintf("state_dir: state\nlisten: {address: 127.0.0.1:%d, allow_plaintext: true}\nlimits: {shutdown_timeout: 1s}\nroles: {analyst: {networks: [127.0.0.1], databases: [\"*\"], statements: [read, session, transaction], read: [\"*\"]}}\nupstreams:\n", port)
		for _, db := range dbs {
			cfg += upstreamLine(c, db)
		}
		if err := os.WriteFile(filepath.Join(dir, "sekisho.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(db1)

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
		return fmt.Sprintf("postgres://u:u-password-1@127.0.0.1:%d/%s?sslmode=disable", port, db)
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
	waitRunning(t, direct, "SELECT pg_sleep(30)", 1, "pg_sleep never started")
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
	waitRunning(t, direct, "SELECT pg_sleep(30)", 0, "the statement kept running upstream after the gateway stopped")
}

// TestSuspendEndsSessions runs the real binary and the real CLI: suspending
// a user ends its running statement within a second (issue 3 asks for
// that bound to be measured here), refuses its new connections, and
// resuming lets it back in.
func TestSuspendEndsSessions(t *testing.T) {
	c, db := pgtest.NewDatabase(t)
	dir := gatewayDir(t, c.Password, map[string]string{"u": "analyst"})
	bin := sekishoBinary(t)
	port, _ := pglocal.FreePort()
	cfgPath := filepath.Join(dir, "sekisho.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`state_dir: state
listen: {address: 127.0.0.1:%d, allow_plaintext: true}
roles: {analyst: {networks: [127.0.0.1], databases: ["*"], statements: [read, session, transaction], read: ["*"]}}
upstreams:
`, port)+upstreamLine(c, db)), 0o600)
	startServe(t, cfgPath)
	url := fmt.Sprintf("postgres://u:u-password-1@127.0.0.1:%d/%s?sslmode=disable", port, db)
	conn := connectWhenUp(t, url)
	ended := make(chan time.Time, 1)
	errs := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)").ReadAll()
		ended <- time.Now()
		errs <- err
	}()
	direct, err := pgconn.Connect(t.Context(), c.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	waitRunning(t, direct, "SELECT pg_sleep(30)", 1, "pg_sleep never started")

	start := time.Now()
	out, err := exec.Command(bin, "user", "suspend", "u", "--reason", "credentials found on a personal laptop", "--config", cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("suspend: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "u is suspended; 1 live sessions ended") {
		t.Fatalf("suspend output: %s", out)
	}
	select {
	case at := <-ended:
		took := at.Sub(start)
		t.Logf("suspension to session end: %s (including the CLI's own start)", took)
		if took > time.Second {
			t.Fatalf("the session ended %s after the suspension; the bound is 1 s", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session outlived the suspension")
	}
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "57P01") || !strings.Contains(err.Error(), "ended by an administrator") {
		t.Fatalf("suspended session's error: %v", err)
	}
	waitRunning(t, direct, "SELECT pg_sleep(30)", 0, "the suspended user's statement kept running upstream")
	if _, err := pgconn.Connect(t.Context(), url); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("a suspended user connected: %v", err)
	}
	if out, err := exec.Command(bin, "user", "resume", "u", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	c2, err := pgconn.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("after resume: %v", err)
	}
	c2.Close(t.Context())
	want := `"reason":"suspended: credentials found on a personal laptop; 1 live sessions ended; 0 access credentials revoked","actor":"`
	if audit := auditLog(t, dir, want); !strings.Contains(audit, want) {
		t.Fatalf("the suspension is not in the audit log with its actor:\n%s", audit)
	}
}

// TestLockAllWithBreakGlass: locking ends everyone's sessions but the
// break-glass admin's, refuses new ones, alerts on break-glass use, and
// unlocking lets everyone back.
func TestLockAllWithBreakGlass(t *testing.T) {
	c, db := pgtest.NewDatabase(t)
	dir := gatewayDir(t, c.Password, map[string]string{"worker": "analyst", "emergency": "admin"})
	bin := sekishoBinary(t)
	port, _ := pglocal.FreePort()
	cfgPath := filepath.Join(dir, "sekisho.yaml")
	// The security team's webhook: alerts arrive there as they happen.
	var hookMu sync.Mutex
	var alerts []string
	hook := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		alerts = append(alerts, string(b))
		hookMu.Unlock()
	}))
	defer hook.Close()
	hookCA := filepath.Join(dir, "hook-ca.pem")
	os.WriteFile(hookCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hook.Certificate().Raw}), 0o644)
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`state_dir: state
listen: {address: 127.0.0.1:%d, allow_plaintext: true}
alerts: {webhook: %s/sekisho, ca_file: hook-ca.pem}
break_glass: [emergency]
roles: {analyst: {networks: [127.0.0.1], databases: ["*"], statements: [read, session, transaction], read: ["*"]}, admin: {networks: [127.0.0.1], databases: ["*"], statements: [read, session, transaction], read: ["*"]}}
upstreams:
`, port, hook.URL)+upstreamLine(c, db)), 0o600)
	startServe(t, cfgPath)
	url := func(u string) string {
		return fmt.Sprintf("postgres://%s:%s-password-1@127.0.0.1:%d/%s?sslmode=disable", u, u, port, db)
	}
	connect := func(u string) (*pgconn.PgConn, error) { return pgconn.Connect(t.Context(), url(u)) }
	worker := connectWhenUp(t, url("worker"))
	emergency := connectWhenUp(t, url("emergency"))

	out, err := exec.Command(bin, "lock", "--all", "--reason", "ransomware suspected", "--config", cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 live sessions ended") {
		t.Fatalf("lock: %v\n%s", err, out)
	}
	if _, err := worker.Exec(t.Context(), "SELECT 1").ReadAll(); err == nil {
		t.Fatal("a non-break-glass session survived the lock")
	}
	if _, err := emergency.Exec(t.Context(), "SELECT 1").ReadAll(); err != nil {
		t.Fatalf("the break-glass session was ended: %v", err)
	}
	if _, err := connect("worker"); err == nil || !strings.Contains(err.Error(), "locked by an administrator: ransomware suspected") {
		t.Fatalf("new connection while locked: %v", err)
	}
	e2, err := connect("emergency")
	if err != nil {
		t.Fatalf("break-glass login while locked: %v", err)
	}
	e2.Close(t.Context())
	if out, err := exec.Command(bin, "unlock", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("unlock: %v\n%s", err, out)
	}
	w2, err := connect("worker")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	w2.Close(t.Context())
	wants := []string{`"type":"gateway.lock"`, `"outcome":"locked"`, `"outcome":"unlocked"`, `"type":"break_glass.used","session":`, `(gateway locked: true); to be reviewed`}
	log := auditLog(t, dir, wants...)
	for _, want := range wants {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	waitUntil := func(what string, cond func(all string) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			hookMu.Lock()
			all := strings.Join(alerts, "\n")
			hookMu.Unlock()
			if cond(all) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the webhook never got %s; it got:\n%s", what, all)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("the lock, the unlock and the break-glass logins", func(all string) bool {
		return strings.Contains(all, `"outcome":"locked"`) && strings.Contains(all, `"outcome":"unlocked"`) &&
			strings.Count(all, `break-glass login by \"emergency\"`) >= 2 &&
			// The accounts expire within the hour: the start-up sweep alerts.
			strings.Contains(all, `account \"worker\" expires soon`)
	})
	hookMu.Lock()
	for _, a := range alerts {
		if strings.Contains(a, `"type":"connection.accepted"`) || strings.Contains(a, `"type":"statement"`) || strings.Contains(a, `"type":"session.end"`) {
			t.Errorf("an ordinary event was alerted: %s", a)
		}
	}
	hookMu.Unlock()
	// The uses wait for a review, which needs a note and is recorded.
	out, err = exec.Command(bin, "breakglass", "list", "--config", cfgPath).CombinedOutput()
	m := regexp.MustCompile(`(?m)^(\d+)\s+emergency\s.*\strue\s+NOT YET$`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("breakglass list: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "breakglass", "review", string(m[1]), "--config", cfgPath).CombinedOutput(); err == nil || !strings.Contains(string(out), "--note is required") {
		t.Fatalf("review without a note: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "breakglass", "review", string(m[1]), "--note", "restored service, ticket 42", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("review: %v\n%s", err, out)
	}
	out, _ = exec.Command(bin, "breakglass", "list", "--all", "--config", cfgPath).CombinedOutput()
	if !strings.Contains(string(out), "restored service, ticket 42") {
		t.Fatalf("the review is not listed:\n%s", out)
	}
}
