package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/oidctest"
	"github.com/sekisho/sekisho/internal/pki"
)

// TestSSOLogin: sign-ins at an OpenID Connect provider started in the
// test — the device grant from a terminal and the authorization code with
// PKCE in a "browser" — give access credentials for the role the IdP's
// groups map to, which real psql then uses; a sign-in without the IdP's
// second-factor claim, from an unmapped group, or for an account an
// administrator manages is refused with a reason.
func TestSSOLogin(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not installed")
	}
	idp := oidctest.New(t, "sekisho-gateway", "client-secret-1")
	g := loginGatewayConfig(t, map[string]string{"kept": "analyst"}, "", fmt.Sprintf(`roles:
  analyst: {networks: [127.0.0.1], databases: ["*"], statements: [read, session], read: ["*"]}
  admin: {networks: [127.0.0.1], databases: ["*"], statements: [all], read: ["*"], write: ["*"], mfa: true}
sso:
  issuer: %s
  client_id: sekisho-gateway
  client_secret_file: sso.secret
  ca_file: %s
  roles:
    - {group: dba, role: admin}
    - {group: research, role: analyst}`, idp.URL, idp.CAFile))
	db, dir, cfgPath, loginPort := g.db, g.dir, g.cfgPath, g.loginPort
	if err := os.WriteFile(filepath.Join(dir, "sso.secret"), []byte("client-secret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startServe(t, cfgPath)
	ca := filepath.Join(dir, "state", pki.CACertFile)
	loginURL := fmt.Sprintf("https://127.0.0.1:%d", loginPort)
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := os.Stat(ca); err == nil {
			if conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", loginPort), &tls.Config{InsecureSkipVerify: true}); err == nil {
				conn.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the login API never came up")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// login runs 'sekisho login --sso' and, once it has printed where to
	// sign in, lets act play the person; it returns the CLI's output.
	login := func(t *testing.T, credFile string, device bool, act func(line string) bool) (string, error) {
		t.Helper()
		args := []string{"login", "--url", loginURL, "--ca", ca, "--sso", "--credential-file", credFile}
		if device {
			args = append(args, "--device-code")
		}
		cmd := exec.Command(sekishoBinary(t), args...)
		cmd.Env = append(os.Environ(), "BROWSER=", "DISPLAY=", "WAYLAND_DISPLAY=")
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		sc := bufio.NewScanner(stdout)
		acted := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !acted && act(sc.Text()) {
				acted = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		return out.String() + stderr.String(), err
	}
	approveDevice := func(t *testing.T) func(string) bool {
		return func(line string) bool {
			m := regexp.MustCompile(`enter the code (\S+)`).FindStringSubmatch(line)
			if m == nil {
				return false
			}
			if !idp.ApproveDevice(m[1]) {
				t.Errorf("the IdP does not know user code %q", m[1])
			}
			return true
		}
	}
	psql := func(credFile, sql string) (string, error) {
		return runCLI(t, "", "psql", "--credential-file", credFile, "-d", db, "-X", "-At", "-c", sql)
	}

	t.Run("device grant, mapped to analyst", func(t *testing.T) {
		idp.SignInAs(oidctest.Person{Username: "Taro.Yamada", Groups: []string{"staff", "research"}, AMR: []string{"pwd", "otp"}})
		cred := filepath.Join(t.TempDir(), "credential.json")
		out, err := login(t, cred, true, approveDevice(t))
		if err != nil || !strings.Contains(out, "logged in as taro.yamada (role analyst)") {
			t.Fatalf("device sign-in: %v\n%s", err, out)
		}
		if out, err := psql(cred, "SELECT current_database() IS NOT NULL"); err != nil || strings.TrimSpace(out) != "t" {
			t.Fatalf("psql with the SSO credential: %v\n%s", err, out)
		}
		// The role from the IdP's groups: analyst reads, does not write.
		if out, err := psql(cred, "CREATE TABLE sso_was_here (x int)"); err == nil || !strings.Contains(out, "role analyst may not run ddl statements") {
			t.Fatalf("analyst wrote: %v\n%s", err, out)
		}
		// The account exists now, made by SSO, with an expiry.
		if out, err := runCLI(t, "", "user", "show", "taro.yamada", "--config", cfgPath); err != nil || !strings.Contains(out, "sso:"+idp.URL) || !strings.Contains(out, "analyst") {
			t.Fatalf("user show: %v\n%s", err, out)
		}
	})

	t.Run("browser with PKCE, mapped to admin (an MFA role)", func(t *testing.T) {
		idp.SignInAs(oidctest.Person{Username: "hanako", Groups: []string{"dba"}, AMR: []string{"pwd", "hwk"}})
		browser := browserClient(t, idp.CAFile, ca)
		var page string
		cred := filepath.Join(t.TempDir(), "credential.json")
		out, err := login(t, cred, false, func(line string) bool {
			u, ok := strings.CutPrefix(line, "Sign in with your browser: ")
			if !ok {
				return false
			}
			if !strings.Contains(u, "code_challenge_method=S256") {
				t.Errorf("the authorization URL has no PKCE challenge: %s", u)
			}
			resp, err := browser.Get(u) // IdP → redirect → the gateway's callback
			if err != nil {
				t.Errorf("browser: %v", err)
				return true
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = fmt.Sprintf("%d %s", resp.StatusCode, b)
			return true
		})
		if err != nil || !strings.Contains(out, "logged in as hanako (role admin)") {
			t.Fatalf("browser sign-in: %v\n%s\npage: %s", err, out, page)
		}
		if !strings.HasPrefix(page, "200") || !strings.Contains(page, "Signed in") || strings.Contains(page, "sks_") {
			t.Fatalf("the browser's page: %s", page)
		}
		if out, err := psql(cred, "SELECT 6 * 7"); err != nil || strings.TrimSpace(out) != "42" {
			t.Fatalf("psql with the SSO credential: %v\n%s", err, out)
		}
	})

	for _, tc := range []struct {
		name   string
		person oidctest.Person
		want   string
	}{
		{"no second factor at the IdP", oidctest.Person{Username: "jiro", Groups: []string{"research"}, AMR: []string{"pwd"}},
			"did not confirm a second factor"},
		{"a group sekisho does not map", oidctest.Person{Username: "saburo", Groups: []string{"marketing"}, AMR: []string{"otp"}},
			"none of saburo's groups"},
		{"an account an administrator manages", oidctest.Person{Username: "kept", Groups: []string{"dba"}, AMR: []string{"mfa"}},
			`account "kept" is managed in sekisho`},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			idp.SignInAs(tc.person)
			cred := filepath.Join(t.TempDir(), "credential.json")
			out, err := login(t, cred, true, approveDevice(t))
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("want a refusal saying %q: %v\n%s", tc.want, err, out)
			}
			if _, err := os.Stat(cred); err == nil {
				t.Fatal("a credential was saved")
			}
		})
	}

	t.Run("a callback nobody started", func(t *testing.T) {
		resp, err := browserClient(t, idp.CAFile, ca).Get(loginURL + "/v1/sso/callback?state=forged&code=forged")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "not recognised") {
			t.Fatalf("forged callback: %d %s", resp.StatusCode, b)
		}
	})
}

// browserClient trusts the IdP and the gateway, as a person's browser
// would, and presents no client certificate.
func browserClient(t *testing.T, cas ...string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	for _, f := range cas {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(b)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
