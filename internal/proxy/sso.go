package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/loginapi"
	"github.com/sekisho/sekisho/internal/store"
)

// Single sign-on with an OpenID Connect IdP. The gateway is the OIDC
// client: it holds the client secret, runs the code exchange (with PKCE)
// or the device grant, verifies the ID token, maps the IdP's groups to a
// role, requires the IdP's second-factor claim, and issues an access
// credential exactly as after a password + TOTP login.
//
// sekisho login --sso starts a sign-in (POST /v1/sso/start) and gets a
// handle, a 256-bit secret only it knows; the browser (or the person at
// the IdP's device page) signs in; the CLI collects the credential with
// the handle (POST /v1/sso/wait). The credential never goes through the
// browser.

// SSOStartRequest is loginapi.SSOStartRequest.
type SSOStartRequest = loginapi.SSOStartRequest

// SSOStartResponse is loginapi.SSOStartResponse.
type SSOStartResponse = loginapi.SSOStartResponse

// SSOWaitRequest is loginapi.SSOWaitRequest.
type SSOWaitRequest = loginapi.SSOWaitRequest

const (
	ssoPendingTTL   = 10 * time.Minute
	ssoMaxPending   = 1000
	ssoMaxPerSource = 10
	ssoWaitInterval = 25 * time.Second
)

// ssoState is the gateway's side of sign-ins in progress.
type ssoState struct {
	mu       sync.Mutex
	forCfg   *config.SSO // the configuration provider was made from
	provider *ssoProvider
	pending  map[string]*ssoPending // by handle
	byState  map[string]*ssoPending // browser flow, by OAuth state
}

type ssoProvider struct {
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	ctx      context.Context // carries the HTTP client for the IdP
}

type ssoPending struct {
	handle, flow, state, nonce, verifier string
	source, lifetime                     string
	tls                                  *tls.ConnectionState
	expires                              time.Time
	cancel                               context.CancelFunc // stops a device-grant poll

	done   chan struct{}
	once   sync.Once
	status int
	resp   LoginResponse
}

func (p *ssoPending) finish(status int, resp LoginResponse) {
	p.once.Do(func() {
		p.status, p.resp = status, resp
		close(p.done)
	})
}

// ssoProviderFor returns the IdP client of the current configuration,
// reading the IdP's discovery document the first time.
func (s *Server) ssoProviderFor(c *config.SSO) (*ssoProvider, error) {
	s.sso.mu.Lock()
	if s.sso.forCfg == c && s.sso.provider != nil {
		p := s.sso.provider
		s.sso.mu.Unlock()
		return p, nil
	}
	s.sso.mu.Unlock()

	roots, err := x509.SystemCertPool()
	if err != nil || c.CAFile != "" {
		roots = x509.NewCertPool()
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("sso.ca_file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, errors.New("sso.ca_file: no certificates")
		}
	}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, TLSHandshakeTimeout: 10 * time.Second}}
	// The key set fetches the IdP's keys with this context for as long as
	// the provider lives, so it is not a request's context.
	ctx := oidc.ClientContext(context.WithValue(context.Background(), oauth2.HTTPClient, hc), hc)
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	op, err := oidc.NewProvider(dctx, c.Issuer)
	if err != nil {
		return nil, fmt.Errorf("IdP discovery: %w", err)
	}
	var extra struct {
		DeviceAuthorization string `json:"device_authorization_endpoint"`
	}
	_ = op.Claims(&extra)
	secret, err := c.ClientSecret()
	if err != nil {
		return nil, err
	}
	ep := op.Endpoint()
	ep.DeviceAuthURL = extra.DeviceAuthorization
	if secret == "" {
		ep.AuthStyle = oauth2.AuthStyleInParams // a public client sends its id in the form
	}
	p := &ssoProvider{
		oauth: oauth2.Config{ClientID: c.ClientID, ClientSecret: string(secret), Endpoint: ep, RedirectURL: c.RedirectURL,
			Scopes: append([]string{oidc.ScopeOpenID}, c.Scopes...)},
		verifier: op.VerifierContext(ctx, &oidc.Config{ClientID: c.ClientID}),
		ctx:      ctx,
	}
	s.sso.mu.Lock()
	s.sso.forCfg, s.sso.provider = c, p
	s.sso.mu.Unlock()
	return p, nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) handleSSOStart(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	ev := audit.Event{Type: audit.Login, Source: r.RemoteAddr, Outcome: audit.OutcomeRefused}
	if cfg.SSO == nil {
		ev.Reason = "sso_not_configured"
		_ = s.record(ev)
		writeJSON(w, http.StatusNotFound, SSOStartResponse{Error: "single sign-on is not configured on this gateway",
			Hint: "Log in with 'sekisho login' (password and authenticator code), or ask " + cfg.Contact + "."})
		return
	}
	var req SSOStartRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Flow != "browser" && req.Flow != "device" {
		ev.Method, ev.Reason = "oidc", "malformed_request"
		_ = s.record(ev)
		writeJSON(w, http.StatusBadRequest, SSOStartResponse{Error: `the request must be JSON with "flow": "browser" or "device"`, Hint: "Use 'sekisho login --sso'."})
		return
	}
	ev.Method = "oidc-" + req.Flow
	refuse := func(status int, reason, msg, hint string) {
		ev.Reason = reason
		_ = s.record(ev)
		writeJSON(w, status, SSOStartResponse{Error: msg, Hint: hint})
	}
	prov, err := s.ssoProviderFor(cfg.SSO)
	if err != nil {
		s.log.Warn("identity provider unavailable", "issuer", cfg.SSO.Issuer, "err", err)
		refuse(http.StatusBadGateway, "idp_unavailable", "sekisho could not reach the identity provider", "Try again shortly; if it persists, tell "+cfg.Contact+".")
		return
	}
	now := s.now()
	p := &ssoPending{handle: randomToken(), flow: req.Flow, source: r.RemoteAddr, lifetime: req.Lifetime, tls: r.TLS,
		expires: now.Add(ssoPendingTTL), done: make(chan struct{})}
	resp := SSOStartResponse{Handle: p.handle}
	switch req.Flow {
	case "browser":
		p.state, p.nonce, p.verifier = randomToken(), randomToken(), oauth2.GenerateVerifier()
		resp.URL = prov.oauth.AuthCodeURL(p.state, oidc.Nonce(p.nonce), oauth2.S256ChallengeOption(p.verifier))
	case "device":
		if prov.oauth.Endpoint.DeviceAuthURL == "" {
			refuse(http.StatusBadRequest, "idp_no_device_grant", "the identity provider does not offer the device authorization grant",
				"Sign in with a browser: 'sekisho login --sso' without --device.")
			return
		}
		ctx, cancel := context.WithTimeout(prov.ctx, 15*time.Second)
		// The library sends only the client id; a confidential client
		// authenticates here too (RFC 8628 section 3.1), in the form.
		var opts []oauth2.AuthCodeOption
		if prov.oauth.ClientSecret != "" {
			opts = append(opts, oauth2.SetAuthURLParam("client_secret", prov.oauth.ClientSecret))
		}
		da, err := prov.oauth.DeviceAuth(ctx, opts...)
		cancel()
		if err != nil {
			s.log.Warn("device authorization failed", "issuer", cfg.SSO.Issuer, "err", err)
			refuse(http.StatusBadGateway, "idp_error", "the identity provider refused to start a device sign-in", "Try again; if it persists, tell "+cfg.Contact+".")
			return
		}
		if !da.Expiry.IsZero() && da.Expiry.Before(p.expires) {
			p.expires = da.Expiry
		}
		resp.UserCode, resp.VerificationURI, resp.URL = da.UserCode, da.VerificationURI, da.VerificationURIComplete
		pctx, pcancel := context.WithDeadline(prov.ctx, p.expires)
		p.cancel = pcancel
		go func() {
			defer pcancel()
			tok, err := prov.oauth.DeviceAccessToken(pctx, da)
			if err != nil {
				s.ssoRefuse(p, cfg, "idp_refused", http.StatusUnauthorized, "the sign-in at the identity provider did not complete: "+oauthError(err),
					"Run 'sekisho login --sso --device' again and finish the sign-in before the code expires.")
				return
			}
			s.ssoComplete(pctx, p, cfg, prov, tok)
		}()
	}
	resp.Expires = p.expires
	if !s.ssoAdd(p) {
		if p.cancel != nil {
			p.cancel()
		}
		refuse(http.StatusTooManyRequests, "too_many_sign_ins", "too many sign-ins are in progress", "Try again in a few minutes.")
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// ssoAdd keeps a sign-in in progress, dropping expired ones; false when
// too many are in progress (each is memory an anonymous caller made).
func (s *Server) ssoAdd(p *ssoPending) bool {
	now := s.now()
	s.sso.mu.Lock()
	defer s.sso.mu.Unlock()
	if s.sso.pending == nil {
		s.sso.pending, s.sso.byState = map[string]*ssoPending{}, map[string]*ssoPending{}
	}
	for h, q := range s.sso.pending {
		if now.After(q.expires) {
			s.ssoDropLocked(h, q)
		}
	}
	if len(s.sso.pending) >= ssoMaxPending {
		return false
	}
	// One address cannot take the room of everyone else's sign-ins.
	n := 0
	for _, q := range s.sso.pending {
		if addressKey(q.source) == addressKey(p.source) {
			n++
		}
	}
	if n >= ssoMaxPerSource {
		return false
	}
	s.sso.pending[p.handle] = p
	if p.state != "" {
		s.sso.byState[p.state] = p
	}
	return true
}

func (s *Server) ssoDropLocked(handle string, p *ssoPending) {
	delete(s.sso.pending, handle)
	delete(s.sso.byState, p.state)
	if p.cancel != nil {
		p.cancel()
	}
}

func oauthError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return re.ErrorCode
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the code expired"
	}
	return "the identity provider's answer was not usable"
}

// handleSSOCallback is where the browser returns from the IdP.
func (s *Server) handleSSOCallback(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	q := r.URL.Query()
	s.sso.mu.Lock()
	p := s.sso.byState[q.Get("state")]
	if p != nil {
		delete(s.sso.byState, p.state) // a state is used once
	}
	s.sso.mu.Unlock()
	page := func(status int, title, text string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<!doctype html><meta charset=utf-8><title>sekisho</title><h1>%s</h1><p>%s</p>\n", html.EscapeString(title), html.EscapeString(text))
	}
	if p == nil || cfg.SSO == nil || s.now().After(p.expires) {
		page(http.StatusBadRequest, "Sign-in not recognised", "This sign-in is unknown, already used or expired. Run 'sekisho login --sso' again.")
		return
	}
	if addressKey(r.RemoteAddr) != addressKey(p.source) {
		// The person's browser and their terminal are on one machine. A
		// sign-in link sent to someone else (to have them sign in for the
		// sender's terminal) comes back from another address.
		s.ssoRefuse(p, cfg, "sso_other_address", http.StatusForbidden,
			fmt.Sprintf("the browser sign-in came from %s, not from %s where 'sekisho login --sso' ran", addressKey(r.RemoteAddr), addressKey(p.source)),
			"Open the sign-in link on the machine where you ran 'sekisho login --sso'; never open one someone sent you.")
		page(http.StatusForbidden, "Sign-in refused", "This sign-in was started on another machine. Only open sign-in links from your own terminal.")
		return
	}
	if e := q.Get("error"); e != "" {
		s.ssoRefuse(p, cfg, "idp_refused", http.StatusUnauthorized, "the identity provider refused the sign-in: "+e, "Check with "+cfg.Contact+" that your IdP account may use sekisho.")
		page(http.StatusUnauthorized, "Sign-in refused", "The identity provider refused the sign-in. Your terminal says more.")
		return
	}
	prov, err := s.ssoProviderFor(cfg.SSO)
	if err != nil {
		s.ssoRefuse(p, cfg, "idp_unavailable", http.StatusBadGateway, "sekisho could not reach the identity provider", "Try again shortly.")
		page(http.StatusBadGateway, "Sign-in failed", "sekisho could not reach the identity provider.")
		return
	}
	ctx, cancel := context.WithTimeout(prov.ctx, 15*time.Second)
	defer cancel()
	tok, err := prov.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		s.ssoRefuse(p, cfg, "idp_refused", http.StatusUnauthorized, "the identity provider did not accept the sign-in code: "+oauthError(err), "Run 'sekisho login --sso' again.")
		page(http.StatusUnauthorized, "Sign-in failed", "The sign-in could not be completed. Your terminal says more.")
		return
	}
	s.ssoComplete(ctx, p, cfg, prov, tok)
	<-p.done
	if p.status != http.StatusOK {
		page(p.status, "Sign-in refused", p.resp.Error+". "+p.resp.Hint)
		return
	}
	page(http.StatusOK, "Signed in", "You are signed in to sekisho as "+p.resp.User+". Return to your terminal.")
}

// ssoRefuse ends a sign-in with a refusal, recorded.
func (s *Server) ssoRefuse(p *ssoPending, cfg *config.Config, reason string, status int, msg, hint string) {
	_ = s.record(audit.Event{Type: audit.Login, Source: p.source, Method: "oidc-" + p.flow, Outcome: audit.OutcomeRefused, Reason: reason})
	p.finish(status, LoginResponse{Error: msg, Hint: hint})
}

// ssoComplete verifies the ID token, maps it to an account and a role,
// and issues the credential the waiting CLI collects.
func (s *Server) ssoComplete(ctx context.Context, p *ssoPending, cfg *config.Config, prov *ssoProvider, tok *oauth2.Token) {
	sc := cfg.SSO
	ev := audit.Event{Type: audit.Login, Source: p.source, Method: "oidc-" + p.flow, Outcome: audit.OutcomeRefused}
	refuse := func(reason string, status int, msg, hint string) {
		ev.Reason = reason
		_ = s.record(ev)
		p.finish(status, LoginResponse{Error: msg, Hint: hint})
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := prov.verifier.Verify(ctx, raw)
	if err != nil || p.flow == "browser" && idt.Nonce != p.nonce {
		s.log.Warn("ID token refused", "issuer", sc.Issuer, "err", err)
		refuse("token_invalid", http.StatusUnauthorized, "the identity provider's ID token did not verify", "Run 'sekisho login --sso' again; if it persists, tell "+cfg.Contact+".")
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		refuse("token_invalid", http.StatusUnauthorized, "the identity provider's ID token is not readable", "Tell "+cfg.Contact+".")
		return
	}
	name, _ := claims[sc.UsernameClaim].(string)
	name = strings.ToLower(name)
	ev.User = name
	if !validAccountName(name) {
		refuse("bad_username_claim", http.StatusForbidden, fmt.Sprintf("the identity provider's %s claim %q is not a usable account name", sc.UsernameClaim, name),
			"Ask "+cfg.Contact+" to check sso.username_claim.")
		return
	}
	roleName, ok := sc.RoleFor(stringList(claims[sc.GroupsClaim]))
	if !ok {
		refuse("no_role_for_groups", http.StatusForbidden, fmt.Sprintf("none of %s's groups at the identity provider gives access to sekisho", name),
			"Ask "+cfg.Contact+" to add you to a group that sso.roles maps to a role.")
		return
	}
	ev.Role = roleName
	role, _ := cfg.Role(roleName)
	acr, _ := claims["acr"].(string)
	mfa := slices.ContainsFunc(stringList(claims["amr"]), func(m string) bool { return slices.Contains(sc.MFAAMR, m) }) ||
		acr != "" && slices.Contains(sc.MFAACR, acr)
	if (sc.MFARequired() || role != nil && role.MFA) && !mfa {
		refuse("mfa_claim_missing", http.StatusForbidden, "the identity provider did not confirm a second factor for this sign-in",
			"Sign in at the identity provider with your second factor (authenticator, security key); if it offered none, ask "+cfg.Contact+".")
		return
	}
	u, ref, reason := s.ssoAccount(ctx, cfg, name, roleName)
	if ref != nil {
		refuse(reason, http.StatusForbidden, ref.Message, ref.Hint)
		return
	}
	resp, status, reason, ref := s.issueCredential(ctx, cfg, u, p.source, p.tls, p.lifetime, &ev)
	if ref != nil {
		refuse(reason, status, ref.Message, ref.Hint)
		return
	}
	p.finish(http.StatusOK, resp)
}

// ssoAccount returns the account of an SSO sign-in, making it on the
// first sign-in and keeping its role and expiry in step with the IdP.
// Accounts made by an administrator are not taken over by the IdP.
func (s *Server) ssoAccount(ctx context.Context, cfg *config.Config, name, role string) (store.User, *Refusal, string) {
	now := s.now()
	life := cfg.SSO.AccountLifetime.D()
	if limit, ok := cfg.AccountLifetime[store.KindEmployee]; ok && limit > 0 && limit.D() < life {
		life = limit.D()
	}
	by := "sso:" + cfg.SSO.Issuer
	u, err := s.store.User(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u = store.User{Name: name, Kind: store.KindEmployee, Role: role, Expires: now.Add(life), Created: now, CreatedBy: by}
		if err := s.store.AddUser(ctx, u); err != nil {
			s.log.Error("state store write failed", "err", err)
			return u, storeRefusal(cfg), "store_unavailable"
		}
		_ = s.record(audit.Event{Type: audit.AccountChange, User: name, Role: role, Actor: by,
			Reason: fmt.Sprintf("account made by single sign-on, role %s, expires %s", role, u.Expires.UTC().Format(time.RFC3339))})
		return u, nil, ""
	case err != nil:
		s.log.Error("state store lookup failed", "err", err)
		return u, storeRefusal(cfg), "store_unavailable"
	case u.CreatedBy != by:
		return u, &Refusal{Message: fmt.Sprintf("account %q is managed in sekisho, not by the identity provider", name),
			Hint: "Log in with 'sekisho login' (password and authenticator code), or ask " + cfg.Contact + " to move the account to single sign-on."}, "account_not_sso"
	}
	oldRole := u.Role
	u, err = s.store.UpdateUser(ctx, name, func(x *store.User) error {
		x.Role = role
		if until := now.Add(life); until.After(x.Expires) {
			x.Expires = until
		}
		x.Updated, x.UpdatedBy = now, by
		return nil
	})
	if err != nil {
		s.log.Error("state store write failed", "err", err)
		return u, storeRefusal(cfg), "store_unavailable"
	}
	if oldRole != role {
		_ = s.record(audit.Event{Type: audit.AccountChange, User: name, Role: role, Actor: by,
			Reason: fmt.Sprintf("role changed from %s to %s by the identity provider's groups", oldRole, role)})
	}
	return u, nil, ""
}

// handleSSOWait hands the CLI its credential when the sign-in completes.
func (s *Server) handleSSOWait(w http.ResponseWriter, r *http.Request) {
	var req SSOWaitRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeLogin(w, http.StatusBadRequest, LoginResponse{Error: `the request must be JSON with "handle"`, Hint: "Use 'sekisho login --sso'."})
		return
	}
	s.sso.mu.Lock()
	p := s.sso.pending[req.Handle]
	s.sso.mu.Unlock()
	if p == nil || !sameClientCert(p.tls, r.TLS) {
		writeLogin(w, http.StatusNotFound, LoginResponse{Error: "no sign-in in progress with this handle (unknown, finished or expired)", Hint: "Run 'sekisho login --sso' again."})
		return
	}
	wait := time.NewTimer(ssoWaitInterval)
	defer wait.Stop()
	select {
	case <-p.done:
	case <-wait.C:
		writeLogin(w, http.StatusAccepted, LoginResponse{Pending: true})
		return
	case <-r.Context().Done():
		return
	}
	s.sso.mu.Lock()
	if s.sso.pending[req.Handle] != p {
		s.sso.mu.Unlock()
		writeLogin(w, http.StatusNotFound, LoginResponse{Error: "this sign-in was already collected", Hint: "Run 'sekisho login --sso' again."})
		return
	}
	s.ssoDropLocked(req.Handle, p) // the credential is handed out once
	s.sso.mu.Unlock()
	writeLogin(w, p.status, p.resp)
}

// sameClientCert: a sign-in started from a managed device (whose
// certificate the credential will be bound to) is collected only by a
// connection presenting the same certificate.
func sameClientCert(start, now *tls.ConnectionState) bool {
	if start == nil || len(start.PeerCertificates) == 0 {
		return true
	}
	return now != nil && len(now.PeerCertificates) > 0 && bytes.Equal(start.PeerCertificates[0].Raw, now.PeerCertificates[0].Raw)
}

// stringList reads a claim that is a list of strings, or one string.
func stringList(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// validAccountName is the rule of 'sekisho user add'.
func validAccountName(n string) bool {
	if n == "" || len(n) > 63 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == '@') {
			return false
		}
	}
	return true
}
