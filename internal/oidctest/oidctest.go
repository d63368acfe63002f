// Package oidctest is an OpenID Connect provider for tests: discovery,
// JWKS, the authorization endpoint (with PKCE), the token endpoint
// (authorization code and device code grants) and device authorization,
// over TLS, with RS256-signed ID tokens. It speaks the protocol as an IdP
// such as Keycloak does, so the gateway's side is tested against the
// standard, not against itself. The "person" signing in is set by the
// test: who they are, their groups and whether they used a second factor.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Person is who signs in at the IdP next.
type Person struct {
	Username string
	Groups   []string
	// AMR are the authentication methods the ID token reports ("pwd",
	// "otp", "mfa", ...); ACR its assurance class, if any.
	AMR []string
	ACR string
}

// IdP is a running test provider.
type IdP struct {
	URL          string // the issuer
	CAFile       string // PEM of the certificate that signed the IdP's
	ClientID     string
	ClientSecret string

	srv    *httptest.Server
	key    *rsa.PrivateKey
	signer jose.Signer

	mu      sync.Mutex
	person  Person
	codes   map[string]*grant // authorization codes
	devices map[string]*grant // by device_code
	byUser  map[string]*grant // device grants by user_code
	// Tokens counts ID tokens issued.
	Tokens int
}

type grant struct {
	redirect, challenge, nonce string
	person                     *Person // set when the person approved (device) or at authorize
	used                       bool
}

// New starts an IdP for the test; it stops when the test ends.
func New(t *testing.T, clientID, clientSecret string) *IdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "test-key"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	p := &IdP{ClientID: clientID, ClientSecret: clientSecret, key: key, signer: signer,
		codes: map[string]*grant{}, devices: map[string]*grant{}, byUser: map[string]*grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /keys", p.keys)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("POST /device", p.deviceAuthorization)
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	p.URL = p.srv.URL
	p.CAFile = filepath.Join(t.TempDir(), "idp-ca.pem")
	if err := os.WriteFile(p.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// SignInAs sets who signs in next.
func (p *IdP) SignInAs(person Person) {
	p.mu.Lock()
	p.person = person
	p.mu.Unlock()
}

// Client is an HTTP client that trusts the IdP (the test's "browser").
func (p *IdP) Client() *http.Client { return p.srv.Client() }

// ApproveDevice is the person entering the user code at the IdP's device
// page and signing in.
func (p *IdP) ApproveDevice(userCode string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.byUser[userCode]
	if g == nil {
		return false
	}
	person := p.person
	g.person = &person
	return true
}

func (p *IdP) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.URL,
		"authorization_endpoint":                p.URL + "/authorize",
		"token_endpoint":                        p.URL + "/token",
		"device_authorization_endpoint":         p.URL + "/device",
		"jwks_uri":                              p.URL + "/keys",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"grant_types_supported":                 []string{"authorization_code", "urn:ietf:params:oauth:grant-type:device_code"},
	})
}

func (p *IdP) keys(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "test-key", Algorithm: "RS256", Use: "sig"}}})
}

// authorize signs the current person in at once (the test is the browser)
// and redirects back with a code.
func (p *IdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != p.ClientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "bad authorization request (client, response_type or PKCE)", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme != "https" {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	person := p.person
	code := token()
	p.codes[code] = &grant{redirect: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), person: &person}
	p.mu.Unlock()
	v := redirect.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (p *IdP) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	if !p.clientOK(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	dc, uc := token(), token()[:8]
	g := &grant{}
	p.devices[dc], p.byUser[uc] = g, g
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code": dc, "user_code": uc, "verification_uri": p.URL + "/device-page",
		"verification_uri_complete": p.URL + "/device-page?user_code=" + uc, "expires_in": 300, "interval": 1,
	})
}

func (p *IdP) clientOK(r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		return false
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == p.ClientID && secret == p.ClientSecret
}

func (p *IdP) token(w http.ResponseWriter, r *http.Request) {
	if !p.clientOK(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var g *grant
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g = p.codes[r.PostForm.Get("code")]
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if g == nil || g.used || g.redirect != r.PostForm.Get("redirect_uri") ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
	case "urn:ietf:params:oauth:grant-type:device_code":
		g = p.devices[r.PostForm.Get("device_code")]
		switch {
		case g == nil || g.used:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		case g.person == nil:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "authorization_pending"})
			return
		}
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	g.used = true
	now := time.Now()
	claims := map[string]any{
		"iss": p.URL, "sub": "sub-" + g.person.Username, "aud": p.ClientID,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"preferred_username": g.person.Username, "groups": g.person.Groups, "amr": g.person.AMR,
	}
	if g.person.ACR != "" {
		claims["acr"] = g.person.ACR
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	payload, _ := json.Marshal(claims)
	obj, err := p.signer.Sign(payload)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	idt, _ := obj.CompactSerialize()
	p.Tokens++
	writeJSON(w, http.StatusOK, map[string]any{"access_token": token(), "token_type": "Bearer", "expires_in": 300, "id_token": idt})
}

func token() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
