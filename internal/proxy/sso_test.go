package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/loginapi"
	"github.com/sekisho/sekisho/internal/oidctest"
	"github.com/sekisho/sekisho/internal/store"
)

func withSSO(idp *oidctest.IdP, secretFile string) gwOption {
	return func(c *config.Config, _ *Options) {
		c.Login.Address = "127.0.0.1:6433"
		c.SSO = &config.SSO{Issuer: idp.URL, ClientID: idp.ClientID, ClientSecretFile: secretFile, CAFile: idp.CAFile,
			RedirectURL: "https://127.0.0.1:6433/v1/sso/callback", Scopes: []string{"profile"},
			UsernameClaim: "preferred_username", GroupsClaim: "groups", MFAAMR: []string{"otp"},
			AccountLifetime: config.Duration(24 * time.Hour), Roles: []config.SSORole{{Group: "research", Role: "analyst"}}}
	}
}

func call(h http.HandlerFunc, method, target, remote, body string) (int, map[string]any) {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	h(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	if out == nil {
		out = map[string]any{"body": rec.Body.String()}
	}
	return rec.Code, out
}

// TestSSOHandles: a sign-in link completed from another machine is
// refused (someone sent it to a victim to sign in for the sender's
// terminal); handles are secret, single-use and checked.
func TestSSOHandles(t *testing.T) {
	idp := oidctest.New(t, "gw", "s3cret")
	secret := t.TempDir() + "/sso.secret"
	if err := writeFile(secret, "s3cret"); err != nil {
		t.Fatal(err)
	}
	g := startGW(t, withSSO(idp, secret))
	s := g.srv
	idp.SignInAs(oidctest.Person{Username: "taro", Groups: []string{"research"}, AMR: []string{"otp"}})
	noRedirect := idp.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	start := func(remote string) (handle, callback string) {
		code, out := call(s.handleSSOStart, "POST", "/v1/sso/start", remote, `{"flow":"browser"}`)
		if code != http.StatusOK {
			t.Fatalf("start: %d %v", code, out)
		}
		resp, err := noRedirect.Get(out["url"].(string))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "https://127.0.0.1:6433/v1/sso/callback?") {
			t.Fatalf("IdP redirect: %d %q", resp.StatusCode, loc)
		}
		return out["handle"].(string), strings.TrimPrefix(loc, "https://127.0.0.1:6433")
	}

	// The link completed from another address: refused, and the waiting
	// terminal hears why.
	handle, cb := start("127.0.0.2:50000")
	if code, out := call(s.handleSSOCallback, "GET", cb, "127.0.0.9:40000", ""); code != http.StatusForbidden || !strings.Contains(out["body"].(string), "started on another machine") {
		t.Fatalf("callback from elsewhere: %d %v", code, out)
	}
	if code, out := call(s.handleSSOWait, "POST", "/v1/sso/wait", "127.0.0.2:50001", `{"handle":"`+handle+`"}`); code != http.StatusForbidden || !strings.Contains(out["error"].(string), "came from 127.0.0.9") {
		t.Fatalf("wait after a foreign callback: %d %v", code, out)
	}
	if idp.Tokens != 0 {
		t.Fatalf("the code was exchanged (%d ID tokens) for a foreign callback", idp.Tokens)
	}

	// From the same machine: a credential, collected once.
	handle, cb = start("127.0.0.2:50002")
	if code, out := call(s.handleSSOCallback, "GET", cb, "127.0.0.2:50003", ""); code != http.StatusOK {
		t.Fatalf("callback: %d %v", code, out)
	}
	code, out := call(s.handleSSOWait, "POST", "/v1/sso/wait", "127.0.0.2:50004", `{"handle":"`+handle+`"}`)
	if code != http.StatusOK || !strings.HasPrefix(out["credential"].(string), "sks_") || out["role"] != "analyst" {
		t.Fatalf("wait: %d %v", code, out)
	}
	if code, _ := call(s.handleSSOWait, "POST", "/v1/sso/wait", "127.0.0.2:50005", `{"handle":"`+handle+`"}`); code != http.StatusNotFound {
		t.Fatalf("second collection: %d", code)
	}
	// The same callback again (a replayed state) does nothing.
	if code, _ := call(s.handleSSOCallback, "GET", cb, "127.0.0.2:50006", ""); code != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d", code)
	}
	for _, bad := range []string{`{"handle":"nope"}`, `{"handle":""}`, `not json`, `{"handle":"x","extra":1}`} {
		if code, _ := call(s.handleSSOWait, "POST", "/v1/sso/wait", "127.0.0.2:1", bad); code != http.StatusNotFound && code != http.StatusBadRequest {
			t.Fatalf("wait %s: %d", bad, code)
		}
	}
	// One address may have only so many sign-ins waiting.
	refused := 0
	for i := range ssoMaxPerSource + 2 {
		code, _ := call(s.handleSSOStart, "POST", "/v1/sso/start", "127.0.0.7:1", `{"flow":"browser"}`)
		if code == http.StatusTooManyRequests {
			refused++
		} else if code != http.StatusOK {
			t.Fatalf("start %d: %d", i, code)
		}
	}
	if refused != 2 {
		t.Fatalf("%d of %d sign-ins from one address refused, want 2", refused, ssoMaxPerSource+2)
	}
	if code, _ := call(s.handleSSOStart, "POST", "/v1/sso/start", "127.0.0.8:1", `{"flow":"browser"}`); code != http.StatusOK {
		t.Fatalf("another address: %d", code)
	}
	for _, bad := range []string{`{"flow":"implicit"}`, `{}`, `[]`, strings.Repeat("x", 10000)} {
		if code, _ := call(s.handleSSOStart, "POST", "/v1/sso/start", "127.0.0.2:1", bad); code != http.StatusBadRequest {
			t.Fatalf("start %.20s: %d", bad, code)
		}
	}
	g.audit.waitFor(t, "a malformed sign-in start", func(e audit.Event) bool {
		return e.Type == audit.Login && e.Reason == "malformed_request" && e.Outcome == audit.OutcomeRefused
	})
	g.audit.waitFor(t, "the sign-in completed from another address", func(e audit.Event) bool {
		return e.Type == audit.Login && e.Reason == "sso_other_address"
	})
}

func TestSSONotConfigured(t *testing.T) {
	g := startGW(t)
	code, out := call(g.srv.handleSSOStart, "POST", "/v1/sso/start", "127.0.0.1:1", `{"flow":"device"}`)
	if code != http.StatusNotFound || !strings.Contains(out["error"].(string), "not configured") {
		t.Fatalf("%d %v", code, out)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// The client reads device states by the login API's names, which are the
// state store's.
func TestLoginAPIDeviceStatus(t *testing.T) {
	if loginapi.DeviceApproved != store.DeviceApproved {
		t.Fatalf("loginapi.DeviceApproved %q, store.DeviceApproved %q", loginapi.DeviceApproved, store.DeviceApproved)
	}
}
