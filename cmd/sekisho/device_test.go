package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sekisho/sekisho/internal/client"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pglocal"
	"github.com/sekisho/sekisho/internal/pgtest"
	"github.com/sekisho/sekisho/internal/pki"
)

// TestManagedDevice: a role with require_device connects only from an
// approved device, with a credential from that device; the credential
// replayed from another machine (no device, or another approved device)
// is refused; revoking the device ends its credential.
func TestManagedDevice(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not installed")
	}
	g := loginGatewayConfig(t, nil, ", max_failures: 50, failures_per_address: 50", `roles:
  analyst: {networks: [127.0.0.1], databases: ["*"], statements: [read, session], read: ["*"], mfa: true, require_device: true}`)
	db, dir, cfgPath, loginPort := g.db, g.dir, g.cfgPath, g.loginPort
	run := func(stdin string, args ...string) (string, error) { return runCLI(t, stdin, args...) }
	if out, err := run("alice-password-1\n", "user", "add", "alice", "--role", "analyst", "--expires", "30d", "--password-stdin", "--config", cfgPath); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	out, err := run("", "user", "mfa", "alice", "--no-qr", "--config", cfgPath)
	m := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("user mfa: %v\n%s", err, out)
	}
	secret := m[1]
	startServe(t, cfgPath)
	ca := filepath.Join(dir, "state", pki.CACertFile)
	loginURL := fmt.Sprintf("https://127.0.0.1:%d", loginPort)
	// A code works once, and the gateway accepts one step either side of
	// now: three logins use the previous, the current and the next code.
	step := identity.TOTPStep(time.Now()) - 2
	login := func(deviceDir, credFile string) (string, error) {
		step = max(step+1, identity.TOTPStep(time.Now())-1)
		if step > identity.TOTPStep(time.Now())+1 {
			t.Fatal("ran out of TOTP steps")
		}
		code, _ := identity.TOTPCode(secret, step)
		return run("alice-password-1\n"+code+"\n", "login", "--url", loginURL, "--ca", ca, "--user", "alice",
			"--password-stdin", "--credential-file", credFile, "--device-dir", deviceDir)
	}
	waitUp := func() {
		for deadline := time.Now().Add(20 * time.Second); ; {
			if out, _ := run("", "device", "list", "--config", cfgPath); strings.Contains(out, "ID") {
				if _, err := os.Stat(filepath.Join(dir, "state", "admin.sock")); err == nil {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("gateway did not start")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitUp()
	tmp := t.TempDir()
	laptop, other := filepath.Join(tmp, "laptop"), filepath.Join(tmp, "other")
	cred := filepath.Join(tmp, "cred.json")

	// No device: the role gets no credential.
	if out, err := login(filepath.Join(tmp, "none"), cred); err == nil || !strings.Contains(out, "approved managed device") {
		t.Fatalf("login without a device: %v\n%s", err, out)
	}
	enroll := func(d, name string) string {
		out, err := run("", "device", "enroll", "--url", loginURL, "--ca", ca, "--user", "alice", "--name", name, "--device-dir", d)
		m := regexp.MustCompile(`device ([0-9a-f]{16}) enrolled`).FindStringSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("enroll: %v\n%s", err, out)
		}
		return m[1]
	}
	laptopID := enroll(laptop, "alice-laptop")
	// Not approved yet: still no credential.
	if out, err := login(laptop, cred); err == nil || !strings.Contains(out, "pending") {
		t.Fatalf("login from a pending device: %v\n%s", err, out)
	}
	if out, err := run("", "device", "approve", laptopID, "--fingerprint", "00", "--config", cfgPath); err == nil || !strings.Contains(out, "does not match") {
		t.Fatalf("approval with a wrong fingerprint: %v\n%s", err, out)
	}
	if out, err := run("", "device", "approve", laptopID, "--config", cfgPath); err != nil {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if out, err := login(laptop, cred); err != nil || !strings.Contains(out, "bound to device "+laptopID) {
		t.Fatalf("login from the approved device: %v\n%s", err, out)
	}
	psql := func(credFile string) (string, error) {
		return run("", "psql", "--credential-file", credFile, "-d", db, "-X", "-At", "-c", "SELECT 7")
	}
	if out, err := psql(cred); err != nil || strings.TrimSpace(out) != "7" {
		t.Fatalf("psql from the device: %v\n%s", err, out)
	}

	// The credential copied to another machine: without the device's key
	// it is refused, and so it is from another approved device.
	var saved client.SavedCredential
	b, _ := os.ReadFile(cred)
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	stolen := saved
	stolen.DeviceCert, stolen.DeviceKey = "", ""
	stolenFile := filepath.Join(tmp, "stolen.json")
	if err := client.WriteCredential(stolenFile, stolen); err != nil {
		t.Fatal(err)
	}
	if out, err := psql(stolenFile); err == nil || !strings.Contains(out, "password authentication failed") {
		t.Fatalf("credential without its device: %v\n%s", err, out)
	}
	otherID := enroll(other, "someone-else")
	if out, err := run("", "device", "approve", otherID, "--config", cfgPath); err != nil {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if _, _, _, err := client.DeviceCertificate(other, mustClient(t, ca)); err != nil {
		t.Fatal(err)
	}
	stolen.DeviceCert, stolen.DeviceKey = filepath.Join(other, "cert.pem"), filepath.Join(other, "key.pem")
	if err := client.WriteCredential(stolenFile, stolen); err != nil {
		t.Fatal(err)
	}
	if out, err := psql(stolenFile); err == nil || !strings.Contains(out, "password authentication failed") {
		t.Fatalf("credential from another device: %v\n%s", err, out)
	}

	// Revoking the device revokes its credential, ends its live session,
	// and its certificate no longer opens anything.
	direct, err := pgconn.Connect(t.Context(), g.c.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(t.Context())
	long := exec.Command(sekishoBinary(t), "psql", "--credential-file", cred, "-d", db, "-X", "-c", "SELECT pg_sleep(60)")
	var longOut strings.Builder
	long.Stdout, long.Stderr = &longOut, &longOut
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, direct, "SELECT pg_sleep(60)", 1, "the device's session never started")
	if out, err := run("", "device", "revoke", laptopID, "--config", cfgPath); err != nil ||
		!strings.Contains(out, "1 access credentials revoked") || !strings.Contains(out, "1 live sessions from the device ended") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	done := make(chan error, 1)
	go func() { done <- long.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(longOut.String(), "device was revoked") {
			t.Fatalf("the device's session after revocation: %v\n%s", err, longOut.String())
		}
	case <-time.After(10 * time.Second):
		long.Process.Kill()
		t.Fatal("the revoked device's session was not ended")
	}
	if out, err := psql(cred); err == nil {
		t.Fatalf("psql from a revoked device: %s", out)
	}
	wants := []string{"enrolment requested", "approved until", "revoked; 1 access credentials revoked", "bound to device " + laptopID, `"reason":"device_refused"`}
	log := auditLog(t, dir, wants...)
	for _, want := range wants {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}

func mustClient(t *testing.T, ca string) *http.Client {
	c, err := client.HTTPClient(ca)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServiceAccountCertificate: a service account connects with its
// client certificate and no password; without it, or with an older one,
// or with its password, it does not.
func TestServiceAccountCertificate(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not installed")
	}
	c, db := pgtest.NewDatabase(t)
	dir := gatewayDir(t, c.Password, nil)
	pgPort, _ := pglocal.FreePort()
	cfgPath := filepath.Join(dir, "sekisho.yaml")
	cfg := fmt.Sprintf(`state_dir: state
listen: {address: 127.0.0.1:%d}
roles:
  batch: {networks: [127.0.0.1], databases: ["*"], statements: [read], read: ["*"]}
  admin: {networks: [127.0.0.1], databases: ["*"], statements: [read], read: ["*"]}
upstreams:
%s`, pgPort, upstreamLine(c, db))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (string, error) { return runCLI(t, stdin, args...) }
	for _, args := range [][]string{
		{"user", "add", "owner", "--role", "admin", "--expires", "30d", "--password-stdin"},
		{"user", "add", "etl", "--kind", "service", "--sponsor", "owner", "--role", "batch", "--expires", "30d", "--password-stdin"},
	} {
		if out, err := run("a-long-password-1\n", append(args, "--config", cfgPath)...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	certs := t.TempDir()
	if out, err := run("", "user", "cert", "owner", "--out", certs, "--config", cfgPath); err == nil || !strings.Contains(out, "for service accounts") {
		t.Fatalf("cert for an employee: %v\n%s", err, out)
	}
	if out, err := run("", "user", "cert", "etl", "--out", certs, "--expires", "7d", "--config", cfgPath); err != nil {
		t.Fatalf("user cert: %v\n%s", err, out)
	}
	old := filepath.Join(t.TempDir(), "old")
	os.MkdirAll(old, 0o700)
	for _, f := range []string{"etl.crt", "etl.key"} {
		b, _ := os.ReadFile(filepath.Join(certs, f))
		os.WriteFile(filepath.Join(old, f), b, 0o600)
	}
	if out, err := run("", "user", "cert", "etl", "--out", certs, "--config", cfgPath); err != nil {
		t.Fatalf("user cert again: %v\n%s", err, out)
	}
	startServe(t, cfgPath)
	ca := filepath.Join(dir, "state", pki.CACertFile)
	conn := func(extra string) (string, error) {
		url := fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s user=etl sslmode=verify-full sslrootcert=%s %s", pgPort, db, ca, extra)
		out, err := exec.Command("psql", url, "-X", "-At", "-w", "-c", "SELECT 5").CombinedOutput()
		return string(out), err
	}
	certArgs := fmt.Sprintf("sslcert=%s sslkey=%s", filepath.Join(certs, "etl.crt"), filepath.Join(certs, "etl.key"))
	for deadline := time.Now().Add(20 * time.Second); ; {
		out, err := conn(certArgs)
		if err == nil && strings.TrimSpace(out) == "5" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service account with its certificate: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := conn(fmt.Sprintf("sslcert=%s sslkey=%s", filepath.Join(old, "etl.crt"), filepath.Join(old, "etl.key"))); err == nil {
		t.Fatalf("a replaced certificate authenticated: %s", out)
	}
	if out, err := conn("password=a-long-password-1"); err == nil || !strings.Contains(out, "password authentication failed") {
		t.Fatalf("service account with a password: %v\n%s", err, out)
	}
	// A forged certificate (right name, another CA) and an expired one
	// from the gateway's own CA: refused in the TLS handshake.
	writeCert := func(ca *pki.DeviceCA, notAfter time.Time) string {
		crt, key, _, err := ca.IssueService("etl", notAfter)
		if err != nil {
			t.Fatal(err)
		}
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, "etl.crt"), crt, 0o600)
		os.WriteFile(filepath.Join(d, "etl.key"), key, 0o600)
		return fmt.Sprintf("sslcert=%s sslkey=%s", filepath.Join(d, "etl.crt"), filepath.Join(d, "etl.key"))
	}
	otherCA, err := pki.EnsureDeviceCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ownCA, err := pki.EnsureDeviceCA(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string]string{
		"forged (another CA)": writeCert(otherCA, time.Now().Add(24*time.Hour)),
		"expired":             writeCert(ownCA, time.Now().Add(-time.Minute)),
	} {
		if out, err := conn(args); err == nil || !strings.Contains(out, "SSL error") {
			t.Fatalf("%s certificate: %v\n%s", name, err, out)
		}
	}
	// Wrong passwords lock the name, but not the certificate out: nobody
	// can stop a batch job by guessing at its name.
	for range 6 {
		conn("password=wrong-guess")
	}
	if out, err := conn("password=a-long-password-1"); err == nil || !strings.Contains(out, "too many failed logins") {
		t.Fatalf("the name was not locked: %v\n%s", err, out)
	}
	if out, err := conn(certArgs); err != nil || strings.TrimSpace(out) != "5" {
		t.Fatalf("certificate after the name was locked: %v\n%s", err, out)
	}
	log := auditLog(t, dir, `"method":"client_certificate"`, `"reason":"tls_handshake_failed"`)
	if !strings.Contains(log, `"method":"client_certificate"`) {
		t.Error("the connection's method is not in the audit log")
	}
	if !strings.Contains(log, `"reason":"tls_handshake_failed"`) {
		t.Error("the refused certificates are not in the audit log")
	}
}
