package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/loginapi"
	"github.com/sekisho/sekisho/internal/store"
)

// The login API: HTTPS, one endpoint. A user proves password and TOTP code
// and gets a short-lived access credential, which clients then use as the
// password of their PostgreSQL connections (sekisho psql, sekisho tunnel).
// The gateway keeps only the credential's SCRAM keys.

// LoginRequest is loginapi.LoginRequest.
type LoginRequest = loginapi.LoginRequest

// LoginResponse is loginapi.LoginResponse.
type LoginResponse = loginapi.LoginResponse

// ServeLogin serves the login API on ln (HTTPS with the listener's
// certificate; plain HTTP only when the gateway has no TLS, which the
// config allows on loopback only). It returns when ln is closed.
func (s *Server) ServeLogin(ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/login", s.handleLogin)
	mux.HandleFunc("POST /v1/devices", s.handleDeviceEnrol)
	mux.HandleFunc("GET /v1/devices/{id}", s.handleDeviceStatus)
	mux.HandleFunc("POST /v1/sso/start", s.handleSSOStart)
	mux.HandleFunc("GET /v1/sso/callback", s.handleSSOCallback)
	mux.HandleFunc("POST /v1/sso/wait", s.handleSSOWait)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10, ErrorLog: nil}
	if t := s.tls.Load(); t != nil {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.tls.Load().cfg, nil // a renewed certificate applies to new logins at once
		}}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func writeLogin(w http.ResponseWriter, status int, r LoginResponse) { writeJSON(w, status, r) }

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	source := r.RemoteAddr
	ev := audit.Event{Type: audit.Login, Source: source, Method: "password+totp", Outcome: audit.OutcomeRefused}
	var req LoginRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.User == "" {
		ev.Reason = "malformed_request"
		_ = s.record(ev)
		writeLogin(w, http.StatusBadRequest, LoginResponse{Error: "the login request is not valid JSON with user, password and totp",
			Hint: "Use 'sekisho login'."})
		return
	}
	ev.User = req.User
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	h := &handshake{s: s, cfg: cfg, source: source, ev: ev}
	fail := func(status int, reason string, ref *Refusal) {
		ev.Reason = reason
		_ = s.record(ev)
		writeLogin(w, status, LoginResponse{Error: ref.Message, Hint: ref.Hint})
	}
	if ref := h.checkGuessing(ctx, req.User); ref != nil {
		fail(http.StatusTooManyRequests, ref.Reason, ref)
		return
	}
	u, err := s.store.User(ctx, req.User)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("state store lookup failed", "err", err)
		fail(http.StatusServiceUnavailable, "store_unavailable", storeRefusal(cfg))
		return
	}
	// The password is checked (argon2id, against a decoy for unknown
	// names) and the code too, whatever else is wrong, so neither the
	// answer nor its time says which part failed or whether the account
	// exists.
	pwOK := identity.CheckPassword(u.PasswordHash, req.Password) && known
	step, codeOK := int64(0), false
	if u.TOTPSecret != "" {
		step, codeOK = identity.CheckTOTP(u.TOTPSecret, req.TOTP, s.now())
	} else {
		_, _ = identity.CheckTOTP("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", req.TOTP, s.now())
	}
	if !pwOK || !codeOK {
		reason := "bad_password"
		switch {
		case pwOK && u.TOTPSecret == "":
			reason = "no_second_factor"
		case pwOK:
			reason = "bad_totp"
		}
		ref := h.loginFailed(ctx, req.User)
		ref.Message = fmt.Sprintf("login failed for user %q", req.User)
		ref.Hint = "Check the user name, password and the current code of your authenticator app; if you have no second factor yet, ask " + cfg.Contact + " to enrol one."
		fail(http.StatusUnauthorized, reason, ref)
		return
	}
	if fresh, err := s.store.UseTOTPStep(ctx, u.Name, step); err != nil || !fresh {
		ref := h.loginFailed(ctx, req.User)
		ref.Message = fmt.Sprintf("login failed for user %q", req.User)
		ref.Hint = "A code works once: wait for the next code of your authenticator app and try again."
		fail(http.StatusUnauthorized, "totp_reused", ref)
		return
	}
	if err := s.store.ClearLoginFailures(ctx, u.Name); err != nil {
		s.log.Warn("login failures not cleared", "user", u.Name, "err", err)
	}
	resp, status, reason, ref := s.issueCredential(ctx, cfg, u, source, r.TLS, req.Lifetime, &ev)
	if ref != nil {
		fail(status, reason, ref)
		return
	}
	writeLogin(w, http.StatusOK, resp)
}

// issueCredential admits an authenticated account (state, role, network
// and hours, gateway lock, device) and issues it an access credential,
// recording the login in ev. On refusal it returns the HTTP status, the
// audit reason and the refusal, and records nothing: the caller does.
func (s *Server) issueCredential(ctx context.Context, cfg *config.Config, u store.User, source string, cs *tls.ConnectionState, askLifetime string, ev *audit.Event) (LoginResponse, int, string, *Refusal) {
	ev.Role = u.Role
	now := s.now()
	role, ok := cfg.Role(u.Role)
	switch {
	case u.Disabled:
		return LoginResponse{}, http.StatusForbidden, "account_disabled", &Refusal{Message: fmt.Sprintf("account %q is disabled", u.Name), Hint: "Ask " + cfg.Contact + " to enable it."}
	case u.Expired(now):
		return LoginResponse{}, http.StatusForbidden, "account_expired", &Refusal{Message: fmt.Sprintf("account %q expired on %s", u.Name, u.Expires.UTC().Format("2006-01-02 15:04 MST")),
			Hint: "Ask " + cfg.Contact + " to extend it (sekisho user extend)."}
	case !ok:
		return LoginResponse{}, http.StatusForbidden, "role_not_configured", &Refusal{Message: fmt.Sprintf("account %q has role %q, which this gateway does not define", u.Name, u.Role),
			Hint: "Ask " + cfg.Contact + "."}
	}
	if ref := admitByRole(cfg, role, u.Role, source, "*", now); ref != nil && ref.Reason != "database_refused" {
		return LoginResponse{}, http.StatusForbidden, ref.Reason, ref
	}
	if lock, err := s.store.GatewayLock(ctx); err != nil || lock.Locked && !containsName(cfg.BreakGlass, u.Name) {
		return LoginResponse{}, http.StatusForbidden, "gateway_locked", &Refusal{Message: "sekisho is locked by an administrator",
			Hint: "Only emergency (break-glass) accounts may log in now; ask " + cfg.Contact + " when access returns."}
	}
	// A device certificate binds the credential to that device; a role
	// that requires a device gets no credential without one.
	dev, derr := s.presentedDevice(ctx, cs, u.Name)
	if derr != nil && (role.RequireDevice || !errors.Is(derr, errNoDevice)) {
		s.log.Info("login device refused", "user", u.Name, "err", derr)
		ref := deviceRefusal(cfg.Contact, derr)
		return LoginResponse{}, http.StatusForbidden, ref.Reason, ref
	}
	lifetime := cfg.Login.CredentialLifetime.D()
	if role.CredentialLifetime > 0 && role.CredentialLifetime.D() < lifetime {
		lifetime = role.CredentialLifetime.D()
	}
	if askLifetime != "" {
		d, err := time.ParseDuration(askLifetime)
		if err != nil || d <= 0 {
			return LoginResponse{}, http.StatusBadRequest, "bad_lifetime", &Refusal{Message: fmt.Sprintf("lifetime %q is not a duration", askLifetime), Hint: "Ask for a duration such as 2h."}
		}
		lifetime = min(lifetime, d)
	}
	if until := u.Expires.Sub(now); until < lifetime {
		lifetime = until // a credential never outlives its account
	}
	secret, v, err := identity.NewAccessCredential(identity.CredentialSalt(s.credentialKey, u.Name))
	if err != nil {
		return LoginResponse{}, http.StatusInternalServerError, "internal_error", &Refusal{Message: "sekisho could not issue a credential", Hint: "Try again."}
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	c := store.Credential{ID: hex.EncodeToString(id), User: u.Name, StoredKey: v.StoredKey, ServerKey: v.ServerKey,
		Issued: now, Expires: now.Add(lifetime), Source: addressKey(source), Device: dev.ID}
	if err := s.store.AddCredential(ctx, c); err != nil {
		s.log.Error("credential not stored", "err", err)
		return LoginResponse{}, http.StatusServiceUnavailable, "store_unavailable", storeRefusal(cfg)
	}
	ev.Outcome, ev.Reason = audit.OutcomeOK, ""
	if err := s.record(*ev); err != nil {
		_, _ = s.store.RevokeCredentials(ctx, u.Name)
		ev.Outcome = audit.OutcomeRefused
		return LoginResponse{}, http.StatusServiceUnavailable, "audit_unavailable", auditRefusal(cfg)
	}
	_ = s.record(audit.Event{Type: audit.CredentialIssued, User: u.Name, Role: u.Role, Source: source,
		Reason: strings.TrimSpace(fmt.Sprintf("credential %s valid until %s %s", c.ID, c.Expires.UTC().Format(time.RFC3339), boundTo(c.Device)))})
	return LoginResponse{User: u.Name, Role: u.Role, Credential: secret, Expires: c.Expires, Port: listenPort(cfg)}, http.StatusOK, "", nil
}

func boundTo(device string) string {
	if device == "" {
		return ""
	}
	return "bound to device " + device
}

func containsName(list []string, name string) bool {
	for _, n := range list {
		if n == name {
			return true
		}
	}
	return false
}

func listenPort(cfg *config.Config) int {
	_, p, err := net.SplitHostPort(cfg.Listen.Address)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// RevokeCredentials ends a user's access credentials (suspension does it).
func (s *Server) RevokeCredentials(ctx context.Context, user, actor string) (int, error) {
	n, err := s.store.RevokeCredentials(ctx, user)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		_ = s.record(audit.Event{Type: audit.CredentialsRevoked, User: user, Actor: actor,
			Reason: strings.TrimSpace(fmt.Sprintf("%d access credentials revoked", n))})
	}
	return n, nil
}
