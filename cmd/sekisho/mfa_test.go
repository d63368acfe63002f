package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pglocal"
	"github.com/sekisho/sekisho/internal/pki"
)

// TestMFALogin: for a role with MFA the password alone opens nothing; a
// login with password and TOTP code gives a credential that sekisho psql
// and sekisho tunnel use with the real psql; a code works once; suspension
// revokes the credential.
func TestMFALogin(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not installed")
	}
	g := loginGatewayConfig(t, nil, "", `roles:
  analyst: {networks: [127.0.0.1], databases: ["*"], statements: [read, session], read: ["*"], mfa: true}`)
	db, dir, cfgPath, pgPort, loginPort := g.db, g.dir, g.cfgPath, g.pgPort, g.loginPort
	bin := sekishoBinary(t)
	run := func(stdin string, args ...string) (string, error) { return runCLI(t, stdin, args...) }
	if out, err := run("alice-password-1\n", "user", "add", "alice", "--role", "analyst", "--expires", "30d", "--password-stdin", "--config", cfgPath); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	out, err := run("", "user", "mfa", "alice", "--config", cfgPath)
	m := regexp.MustCompile(`otpauth://totp/\S+secret=([A-Z2-7]+)`).FindStringSubmatch(out)
	if err != nil || m == nil || !strings.Contains(out, "█") {
		t.Fatalf("user mfa: %v\n%s", err, out)
	}
	secret := m[1]
	startServe(t, cfgPath)
	ca := filepath.Join(dir, "state", pki.CACertFile)
	gwURL := fmt.Sprintf("postgres://alice:alice-password-1@127.0.0.1:%d/%s?sslmode=verify-full&sslrootcert=%s", pgPort, db, ca)
	// The password alone: refused, as a wrong password is.
	for deadline := time.Now().Add(20 * time.Second); ; {
		b, err := exec.Command("psql", gwURL, "-X", "-At", "-c", "SELECT 1").CombinedOutput()
		out = string(b)
		if strings.Contains(out, "password authentication failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("password-only psql: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "sekisho login") {
		t.Fatalf("the refusal does not say how to log in: %s", out)
	}

	credFile := filepath.Join(t.TempDir(), "credential.json")
	login := func(password, code string) (string, error) {
		return run(password+"\n"+code+"\n", "login", "--url", fmt.Sprintf("https://127.0.0.1:%d", loginPort), "--ca", ca,
			"--user", "alice", "--password-stdin", "--credential-file", credFile)
	}
	code := func(offset int64) string {
		s, err := identity.TOTPCode(secret, identity.TOTPStep(time.Now())+offset)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, bad := range []struct{ name, password, code string }{
		{"wrong code", "alice-password-1", "000000"},
		{"missing code", "alice-password-1", ""},
		{"wrong password", "nope", code(0)},
	} {
		if out, err := login(bad.password, bad.code); err == nil || !strings.Contains(out, `login failed for user "alice"`) {
			t.Fatalf("%s: %v\n%s", bad.name, err, out)
		}
	}
	first := code(0)
	if out, err := login("alice-password-1", first); err != nil || !strings.Contains(out, "logged in as alice (role analyst)") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	if fi, err := os.Stat(credFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v %v", fi, err)
	}
	// The same code again: refused (a code works once).
	if out, err := login("alice-password-1", first); err == nil || !strings.Contains(out, "A code works once") {
		t.Fatalf("reused code: %v\n%s", err, out)
	}

	psql := func(args ...string) (string, error) {
		return run("", append([]string{"psql", "--credential-file", credFile, "-d", db, "-X", "-At"}, args...)...)
	}
	if out, err := psql("-c", "SELECT current_user IS NOT NULL"); err != nil || strings.TrimSpace(out) != "t" {
		t.Fatalf("sekisho psql: %v\n%s", err, out)
	}

	tunnelPort, _ := pglocal.FreePort()
	tunnel := exec.Command(bin, "tunnel", "--listen", fmt.Sprintf("127.0.0.1:%d", tunnelPort), "--credential-file", credFile)
	if err := tunnel.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tunnel.Process.Kill(); tunnel.Wait() })
	local := fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s user=whoever sslmode=disable", tunnelPort, db)
	for deadline := time.Now().Add(10 * time.Second); ; {
		out, err := exec.Command("psql", local, "-X", "-At", "-c", "SELECT 40 + 2").CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) == "42" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("psql through the tunnel: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Suspension revokes the credential; resuming does not bring it back.
	if out, err := run("", "user", "suspend", "alice", "--reason", "laptop stolen", "--config", cfgPath); err != nil || !strings.Contains(out, "suspended") {
		t.Fatalf("suspend: %v\n%s", err, out)
	}
	if out, err := run("", "user", "resume", "alice", "--config", cfgPath); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if out, err := psql("-c", "SELECT 1"); err == nil || !strings.Contains(out, "password authentication failed") {
		t.Fatalf("revoked credential: %v\n%s", err, out)
	}
	if out, err := login("alice-password-1", code(1)); err != nil {
		t.Fatalf("login after resume: %v\n%s", err, out)
	}
	if out, err := psql("-c", "SELECT 1"); err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("new credential: %v\n%s", err, out)
	}

	wants := []string{`"type":"login","user":"alice","role":"analyst"`, `"reason":"totp_reused"`, `"reason":"bad_totp"`,
		`"type":"credential.issued"`, `"type":"credential.revoked"`, `"type":"mfa.enrolled"`, `"method":"access_credential"`}
	log := auditLog(t, dir, wants...)
	for _, want := range wants {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}
