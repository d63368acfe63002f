package proxy

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pki"
	"github.com/sekisho/sekisho/internal/store"
	"github.com/sekisho/sekisho/internal/wire"
)

// clientParams are the startup parameters passed on to the upstream. Any
// other parameter is refused: "options" in particular could set server
// settings (role, session_authorization) the gateway has not decided.
var clientParams = map[string]bool{
	"application_name":            true,
	"client_encoding":             true,
	"DateStyle":                   true,
	"TimeZone":                    true,
	"IntervalStyle":               true,
	"extra_float_digits":          true,
	"search_path":                 true,
	"lc_monetary":                 true,
	"lc_numeric":                  true,
	"lc_time":                     true,
	"bytea_output":                true,
	"standard_conforming_strings": true,
}

// handshake is one connection before it becomes a session.
type handshake struct {
	s      *Server
	cfg    *config.Config
	conn   net.Conn
	source string
	tls    *listenerTLS // the TLS this connection negotiated; nil if plaintext
	ev     audit.Event  // the connection event, filled in as facts are learnt
	user   store.User   // the account, once authenticated
	device string       // the approved managed device it came from, if any
}

func (s *Server) handleConn(raw net.Conn) {
	cfg := s.cfg.Load()
	h := &handshake{s: s, cfg: cfg, conn: raw, source: raw.RemoteAddr().String()}
	h.ev = audit.Event{Type: audit.ConnectionRefused, Session: s.nextID.Add(1), Source: h.source}
	registered := false
	defer func() {
		if !registered {
			s.mu.Lock()
			s.handshake--
			s.mu.Unlock()
		}
		h.conn.Close()
	}()
	_ = raw.SetDeadline(time.Now().Add(cfg.Limits.StartupTimeout.D())) // real time, not the injectable clock

	if !s.slotsFree() {
		h.refuse(&Refusal{Code: codeTooManyConnections, Fatal: true, Reason: "too_many_sessions",
			Message: "sorry, too many clients already: the gateway's session limit is reached",
			Hint:    "Try again later, or ask " + cfg.Contact + " to raise limits.max_sessions."})
		return
	}
	sm, ref := h.startup()
	if ref != nil {
		h.refuse(ref)
		return
	}
	if sm == nil {
		return // a CancelRequest, handled and audited
	}
	cr := wire.NewReader(h.conn, wire.MaxAuthMessageLen)
	p, up, ref := h.authenticate(sm, cr)
	if ref != nil {
		h.refuse(ref)
		return
	}
	ss := newSession(s, cfg, p, h.conn, cr, up)
	if err := s.register(ss); err != nil {
		up.close()
		h.refuse(&Refusal{Code: codeCannotConnect, Fatal: true, Reason: "internal_error",
			Message: "sekisho could not start the session", Hint: "Try again; if it persists, tell " + cfg.Contact + "."})
		return
	}
	registered = true
	// A suspension or lock that landed while this client authenticated
	// found no session to end; now that the session is registered, look
	// again, so none slips through between the check and the registration.
	if ref := h.recheck(); ref != nil {
		s.unregister(ss)
		up.close()
		h.refuse(ref)
		return
	}
	h.ev.Type = audit.ConnectionAccepted
	if err := s.record(h.ev); err != nil {
		s.unregister(ss)
		up.close()
		h.ev.Type = audit.ConnectionRefused
		h.refuse(auditRefusal(cfg))
		return
	}
	// The last login feeds dormancy checks, which count in days: one write
	// an hour per account is enough and keeps the store off the login path.
	if now := s.now(); now.Sub(h.user.LastLogin) > time.Hour {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := s.store.TouchLogin(ctx, h.user.Name, now); err != nil {
			s.log.Warn("last login not recorded", "user", h.user.Name, "err", err)
		}
		cancel()
	}
	_ = raw.SetDeadline(time.Time{})
	_ = h.conn.SetDeadline(time.Time{})
	ss.run()
}

// refuse sends the refusal (when the client can still read it) and records
// the refused attempt.
func (h *handshake) refuse(r *Refusal) {
	r.Fatal = true
	h.ev.Type = audit.ConnectionRefused
	h.ev.Reason = r.Reason
	h.ev.SQLState = r.Code
	_ = h.s.record(h.ev)
	if r.Code == "" {
		return // the client is gone or broke TLS: nothing to tell it
	}
	b, err := r.ErrorResponse().Encode(nil)
	if err == nil {
		_ = h.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = h.conn.Write(b)
	}
}

// startup reads the startup packets: SSLRequest (answered, then TLS),
// GSSENCRequest (declined), CancelRequest (acted on) and finally the
// StartupMessage. It returns nil, nil after a CancelRequest.
func (h *handshake) startup() (*pgproto3.StartupMessage, *Refusal) {
	sawSSL := false
	for {
		msg, err := wire.ReadStartup(h.conn)
		if err != nil {
			return nil, startupReadRefusal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if sawSSL {
				return nil, &Refusal{Code: codeProtocolViolation, Reason: "protocol_violation",
					Message: "protocol violation: a second SSLRequest", Hint: "Send one SSLRequest, then the startup message over TLS."}
			}
			sawSSL = true
			lt := h.s.tls.Load()
			if lt == nil {
				if _, err := h.conn.Write([]byte{'N'}); err != nil {
					return nil, &Refusal{Reason: "client_closed"}
				}
				continue
			}
			if _, err := h.conn.Write([]byte{'S'}); err != nil {
				return nil, &Refusal{Reason: "client_closed"}
			}
			tc := tls.Server(h.conn, lt.cfg)
			if err := tc.Handshake(); err != nil {
				return nil, &Refusal{Reason: "tls_handshake_failed"}
			}
			h.conn, h.tls = tc, lt
		case *pgproto3.GSSEncRequest:
			if _, err := h.conn.Write([]byte{'N'}); err != nil {
				return nil, &Refusal{Reason: "client_closed"}
			}
		case *pgproto3.CancelRequest:
			h.s.handleCancel(m, h.source)
			return nil, nil
		case *pgproto3.StartupMessage:
			return m, h.checkStartup(m)
		}
	}
}

func startupReadRefusal(err error) *Refusal {
	if errors.Is(err, wire.ErrMalformed) {
		return &Refusal{Code: codeProtocolViolation, Reason: "protocol_violation",
			Message: "invalid startup packet: this is a PostgreSQL gateway",
			Hint:    "Connect with a PostgreSQL client (psql, libpq, JDBC)."}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &Refusal{Code: codeProtocolViolation, Reason: "startup_timeout",
			Message: "the startup did not finish in time", Hint: "Check the network between the client and the gateway."}
	}
	return &Refusal{Reason: "client_closed"}
}

// checkStartup enforces TLS and the startup parameters.
func (h *handshake) checkStartup(m *pgproto3.StartupMessage) *Refusal {
	h.ev.User = m.Parameters["user"]
	h.ev.Database = m.Parameters["database"]
	if h.ev.Database == "" {
		h.ev.Database = h.ev.User
	}
	if h.tls == nil && !h.cfg.Listen.AllowPlaintext {
		return &Refusal{Code: codeInvalidAuthorization, Reason: "tls_required",
			Message: "sekisho requires TLS: the connection was not encrypted",
			Hint:    "Connect with sslmode=require, or sslmode=verify-full with sslrootcert set to the gateway's CA certificate."}
	}
	if h.ev.User == "" {
		return &Refusal{Code: codeInvalidAuthorization, Reason: "no_user",
			Message: "no user name in the startup message", Hint: "Give a user name (psql -U NAME)."}
	}
	if _, ok := m.Parameters["replication"]; ok {
		return &Refusal{Code: codeFeatureNotSupported, Reason: "replication_refused",
			Message: "replication connections are not allowed through sekisho", Hint: "Run replication on the database network, not through the gateway."}
	}
	for k := range m.Parameters {
		if k == "user" || k == "database" || clientParams[k] || strings.HasPrefix(k, "_pq_.") {
			continue
		}
		return &Refusal{Code: codeFeatureNotSupported, Reason: "startup_parameter_refused",
			Message: fmt.Sprintf("startup parameter %q is not allowed through sekisho", k),
			Hint:    "Remove it from the connection settings (for example PGOPTIONS); set session settings with SET after connecting."}
	}
	return nil
}

// authenticate runs SCRAM-SHA-256 against the user's verifier, admits the
// account, and connects the upstream. Only then does the client see
// AuthenticationOk.
func (h *handshake) authenticate(sm *pgproto3.StartupMessage, cr *wire.Reader) (Principal, *upstreamConn, *Refusal) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Limits.StartupTimeout.D())
	defer cancel()
	user := h.ev.User
	if ref := h.checkGuessing(ctx, user); ref != nil {
		return Principal{}, nil, ref
	}
	u, err := h.s.store.User(ctx, user)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.s.log.Error("state store lookup failed", "err", err)
		return Principal{}, nil, storeRefusal(h.cfg)
	}
	v, perr := identity.ParseVerifier(u.Verifier)
	if !known || perr != nil {
		v = identity.DecoyVerifier(h.s.decoyKey, user)
	}
	// A role with MFA takes only access credentials from the login API
	// (password + TOTP there); its accounts' passwords open nothing here.
	// Accounts made by single sign-on have no password at all: they too
	// connect only with access credentials.
	var creds []identity.Verifier
	mfa := false
	if r, ok := h.cfg.Role(u.Role); known && ok && (r.MFA || u.Verifier == "") {
		mfa = true
		stored, err := h.s.store.Credentials(ctx, user, h.s.now())
		if err != nil {
			h.s.log.Error("state store lookup failed", "err", err)
			return Principal{}, nil, storeRefusal(h.cfg)
		}
		// A credential bound to a device works only with that device's
		// certificate on this very connection; with require_device, only
		// bound credentials work at all.
		presented := ""
		if tc, ok := h.conn.(*tls.Conn); ok {
			if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 {
				presented, _ = pki.DeviceID(cs.PeerCertificates[0])
			}
		}
		keys := make([][2][]byte, 0, len(stored))
		for _, c := range stored {
			if c.Device != "" && c.Device != presented || c.Device == "" && r.RequireDevice {
				continue
			}
			keys = append(keys, [2][]byte{c.StoredKey, c.ServerKey})
		}
		creds = identity.CredentialVerifiers(identity.CredentialSalt(h.s.credentialKey, user), keys)
	}
	mechanisms := []string{identity.ScramMechanism}
	var certHash []byte
	// The binding data of the certificate this very handshake presented,
	// even if the certificate was renewed since.
	if h.tls != nil && h.tls.certHash != nil {
		certHash = h.tls.certHash
		mechanisms = []string{identity.ScramPlusMechanism, identity.ScramMechanism}
	}

	// Protocol negotiation, as PostgreSQL does it: offer 3.0 and name the
	// _pq_ options we do not know.
	if minor := sm.ProtocolVersion & 0xffff; minor > 0 || hasPQOptions(sm) {
		var unknown []string
		for k := range sm.Parameters {
			if strings.HasPrefix(k, "_pq_.") {
				unknown = append(unknown, k)
			}
		}
		sort.Strings(unknown)
		if err := h.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown}); err != nil {
			return Principal{}, nil, &Refusal{Reason: "client_closed"}
		}
	}
	// A service account authenticates with its client certificate (from
	// sekisho user cert): the current one, issued by the device CA and
	// naming the account. Without it the exchange below runs against a
	// decoy and fails like a wrong password, saying nothing more.
	certAuth, decoy := false, !known || perr != nil
	if known && u.Kind == store.KindService {
		decoy = true
		if tc, ok := h.conn.(*tls.Conn); ok {
			if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 {
				name, named := pki.ServiceUser(cs.PeerCertificates[0])
				fp := pki.CertFingerprint(cs.PeerCertificates[0].Raw)
				certAuth = named && name == user && u.CertFingerprint != "" &&
					subtle.ConstantTimeCompare([]byte(fp), []byte(u.CertFingerprint)) == 1
			}
		}
		if !certAuth {
			v = identity.DecoyVerifier(h.s.decoyKey, user)
		}
	}
	exchange := func() ([]byte, *Refusal) {
		if err := h.send(&pgproto3.AuthenticationSASL{AuthMechanisms: mechanisms}); err != nil {
			return nil, &Refusal{Reason: "client_closed"}
		}
		body, ref := h.readPassword(cr)
		if ref != nil {
			return nil, ref
		}
		var first pgproto3.SASLInitialResponse
		if err := first.Decode(body); err != nil {
			return nil, protocolRefusal("malformed SASLInitialResponse")
		}
		if !slices.Contains(mechanisms, first.AuthMechanism) {
			return nil, &Refusal{Code: codeInvalidAuthorization, Reason: "bad_sasl_mechanism",
				Message: fmt.Sprintf("SASL mechanism %q not offered: sekisho offers %s", first.AuthMechanism, strings.Join(mechanisms, " and ")),
				Hint:    "Use a client that supports SCRAM-SHA-256 (libpq 10 or later)."}
		}
		scram := identity.NewScramServer(v, decoy, certHash, first.AuthMechanism)
		h.ev.Method = "password"
		if mfa {
			scram = identity.NewScramServerAny(identity.CredentialSalt(h.s.credentialKey, user), creds, certHash, first.AuthMechanism)
			h.ev.Method = "access_credential"
		}
		serverFirst, err := scram.ClientFirst(first.Data)
		if err != nil {
			return nil, h.loginFailed(ctx, user)
		}
		if err := h.send(&pgproto3.AuthenticationSASLContinue{Data: serverFirst}); err != nil {
			return nil, &Refusal{Reason: "client_closed"}
		}
		body, ref = h.readPassword(cr)
		if ref != nil {
			return nil, ref
		}
		var final pgproto3.SASLResponse
		if err := final.Decode(body); err != nil {
			return nil, protocolRefusal("malformed SASLResponse")
		}
		serverFinal, err := scram.ClientFinal(final.Data)
		if err != nil {
			return nil, h.loginFailed(ctx, user)
		}
		return serverFinal, nil
	}
	var serverFinal []byte
	if certAuth {
		h.ev.Method = "client_certificate"
	} else {
		var ref *Refusal
		if serverFinal, ref = exchange(); ref != nil {
			return Principal{}, nil, ref
		}
	}
	if err := h.s.store.ClearLoginFailures(ctx, user); err != nil {
		h.s.log.Warn("login failures not cleared", "user", user, "err", err)
	}

	// Admission: only now, after the password proved who this is, may the
	// refusal say what is wrong with the account.
	h.user = u
	now := h.s.now()
	h.ev.Role = u.Role
	switch {
	case u.Disabled:
		return Principal{}, nil, &Refusal{Code: codeInvalidAuthorization, Reason: "account_disabled",
			Message: fmt.Sprintf("account %q is disabled", user), Hint: "Ask " + h.cfg.Contact + " to enable it."}
	case u.Expired(now):
		return Principal{}, nil, &Refusal{Code: codeInvalidAuthorization, Reason: "account_expired",
			Message: fmt.Sprintf("account %q expired on %s", user, u.Expires.UTC().Format("2006-01-02 15:04 MST")),
			Hint:    "Ask " + h.cfg.Contact + " to extend it (sekisho user extend)."}
	}
	role, ok := h.cfg.Role(u.Role)
	if ok {
		// The device: required by the role, or presented (then it must be
		// a good one: a revoked device's certificate is refused).
		var state *tls.ConnectionState
		if tc, isTLS := h.conn.(*tls.Conn); isTLS {
			cs := tc.ConnectionState()
			state = &cs
		}
		dev, derr := h.s.presentedDevice(ctx, state, user)
		if derr != nil && (role.RequireDevice || !errors.Is(derr, errNoDevice)) {
			h.s.log.Info("connection device refused", "user", user, "err", derr)
			return Principal{}, nil, deviceRefusal(h.cfg.Contact, derr)
		}
		if dev.ID != "" {
			h.ev.Method += " device=" + dev.ID
			h.device = dev.ID
		}
	}
	if !ok {
		return Principal{}, nil, &Refusal{Code: codeInvalidAuthorization, Reason: "role_not_configured",
			Message: fmt.Sprintf("account %q has role %q, which this gateway does not define", user, u.Role),
			Hint:    "Ask " + h.cfg.Contact + " to fix the account's role or the gateway's roles."}
	}
	if ref := admitByRole(h.cfg, role, u.Role, h.source, h.ev.Database, now); ref != nil {
		return Principal{}, nil, ref
	}
	breakGlass := slices.Contains(h.cfg.BreakGlass, user)
	lock, err := h.s.store.GatewayLock(ctx)
	if err != nil {
		h.s.log.Error("state store lookup failed", "err", err)
		return Principal{}, nil, storeRefusal(h.cfg)
	}
	if lock.Locked && !breakGlass {
		return Principal{}, nil, &Refusal{Code: codeInvalidAuthorization, Reason: "gateway_locked",
			Message: "sekisho is locked by an administrator: " + lock.Reason,
			Hint:    "Only emergency (break-glass) accounts may connect now; ask " + h.cfg.Contact + " when access returns."}
	}
	if breakGlass {
		// Every use of an emergency account is an alert, and stays on the
		// list of uses to review (sekisho breakglass) until someone has.
		id, err := h.s.store.AddBreakGlassUse(ctx, store.BreakGlassUse{User: user, At: now, Source: h.source, Database: h.ev.Database, Locked: lock.Locked})
		if err != nil {
			h.s.log.Error("state store write failed", "err", err)
			return Principal{}, nil, storeRefusal(h.cfg)
		}
		h.s.log.Warn("break-glass account used: review it with 'sekisho breakglass list'", "user", user, "source", h.source, "use", id)
		if err := h.s.record(audit.Event{Type: audit.BreakGlass, Session: h.ev.Session, User: user, Role: u.Role,
			Source: h.source, Database: h.ev.Database, Reason: fmt.Sprintf("break-glass login #%d (gateway locked: %t); to be reviewed", id, lock.Locked)}); err != nil {
			return Principal{}, nil, auditRefusal(h.cfg)
		}
	}
	upCfg, ok := h.cfg.Upstream(h.ev.Database)
	if !ok {
		return Principal{}, nil, &Refusal{Code: codeInvalidCatalogName, Reason: "unknown_database",
			Message: fmt.Sprintf("database %q is not served by this gateway", h.ev.Database),
			Hint:    "Connect to one of: " + strings.Join(databaseNames(h.cfg), ", ") + "."}
	}
	params := map[string]string{}
	for k, v := range sm.Parameters {
		if clientParams[k] {
			params[k] = v
		}
	}
	key, gen := poolKey(user, u.Role, upCfg, params), h.s.pool.generation()
	up := h.s.pool.get(key, h.cfg.Limits.UpstreamIdleTimeout.D(), h.s.now())
	if up == nil {
		var derr error
		if up, derr = dialUpstream(ctx, upCfg, params, h.cfg.Limits.UpstreamTimeout.D()); derr != nil {
			h.s.log.Warn("upstream connect failed", "database", h.ev.Database, "host", upCfg.Host, "port", upCfg.Port, "err", derr)
			up = nil
		}
	}
	if up != nil {
		up.poolKey, up.poolGen = key, gen
	}
	if up == nil {
		return Principal{}, nil, &Refusal{Code: codeCannotConnect, Reason: "upstream_unavailable",
			Message: fmt.Sprintf("sekisho could not connect to the database server for %q", h.ev.Database),
			Hint:    "Try again shortly; if it persists, tell " + h.cfg.Contact + "."}
	}
	p := Principal{User: user, Role: u.Role, Database: h.ev.Database, Source: h.source, Session: h.ev.Session, Device: h.device}
	if serverFinal != nil { // nil: authenticated by certificate, no SASL exchange
		if err := h.send(&pgproto3.AuthenticationSASLFinal{Data: serverFinal}); err != nil {
			up.close()
			return Principal{}, nil, &Refusal{Reason: "client_closed"}
		}
	}
	return p, up, nil
}

// recheck reads the account and the gateway lock again after the session
// is registered (see handleConn).
func (h *handshake) recheck() *Refusal {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Limits.StartupTimeout.D())
	defer cancel()
	u, err := h.s.store.User(ctx, h.user.Name)
	if err != nil {
		return storeRefusal(h.cfg)
	}
	if u.Disabled {
		return &Refusal{Code: codeInvalidAuthorization, Reason: "account_disabled",
			Message: fmt.Sprintf("account %q is disabled", u.Name), Hint: "Ask " + h.cfg.Contact + " to enable it."}
	}
	lock, err := h.s.store.GatewayLock(ctx)
	if err != nil {
		return storeRefusal(h.cfg)
	}
	if lock.Locked && !slices.Contains(h.cfg.BreakGlass, u.Name) {
		return &Refusal{Code: codeInvalidAuthorization, Reason: "gateway_locked",
			Message: "sekisho is locked by an administrator: " + lock.Reason,
			Hint:    "Only emergency (break-glass) accounts may connect now; ask " + h.cfg.Contact + " when access returns."}
	}
	return nil
}

// checkGuessing refuses before any password work when the name is locked
// or the address has failed too often. Names that have no account are
// counted and locked exactly like real ones, so a lockout reveals nothing.
func (h *handshake) checkGuessing(ctx context.Context, user string) *Refusal {
	now := h.s.now()
	lc := h.cfg.Login
	if h.s.failures.blocked(h.source, now, lc.FailureWindow.D(), lc.FailuresPerAddress) {
		return &Refusal{Code: codeRejectedConnection, Reason: "address_rate_limited",
			Message: "too many failed logins from your address",
			Hint:    fmt.Sprintf("Wait up to %s before trying again; if this is unexpected, tell %s.", lc.FailureWindow.D(), h.cfg.Contact)}
	}
	if h.serviceCertFor(user) {
		// The name lock guards passwords, and a service account has none
		// that works: otherwise anyone could lock a batch job out with a
		// few wrong passwords. Its certificate is checked in full later.
		return nil
	}
	until, err := h.s.store.LockedUntil(ctx, user)
	if err != nil {
		h.s.log.Error("state store lookup failed", "err", err)
		return storeRefusal(h.cfg)
	}
	if now.Before(until) {
		return &Refusal{Code: codeInvalidAuthorization, Reason: "locked",
			Message: fmt.Sprintf("too many failed logins for user %q: logins are refused until %s", user, until.Format("2006-01-02 15:04 MST")),
			Hint:    "Wait until then, or ask " + h.cfg.Contact + " to check what happened."}
	}
	return nil
}

// serviceCertFor reports whether the client presented a certificate from
// the gateway's client CA (TLS verified the chain) that names service
// account user.
func (h *handshake) serviceCertFor(user string) bool {
	tc, ok := h.conn.(*tls.Conn)
	if !ok {
		return false
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return false
	}
	name, named := pki.ServiceUser(cs.PeerCertificates[0])
	return named && name == user
}

// loginFailed counts a failed login for the address and the name, locks
// the name when it reaches the limit (raising an account.locked alert),
// and returns the one refusal every failed login gets.
func (h *handshake) loginFailed(ctx context.Context, user string) *Refusal {
	now := h.s.now()
	lc := h.cfg.Login
	h.s.failures.fail(h.source, now, lc.FailureWindow.D())
	n, err := h.s.store.LoginFailure(ctx, user, now, lc.FailureWindow.D())
	if err != nil {
		h.s.log.Error("login failure not recorded", "err", err)
	} else if n >= lc.MaxFailures {
		until := now.Add(lc.Lockout.D())
		if err := h.s.store.Lock(ctx, user, until); err != nil {
			h.s.log.Error("lock not recorded", "err", err)
		}
		_ = h.s.record(audit.Event{Type: audit.AccountLocked, Session: h.ev.Session, User: user, Source: h.source,
			Reason: fmt.Sprintf("%d failed logins within %s; locked until %s", n, lc.FailureWindow.D(), until.UTC().Format(time.RFC3339))})
	}
	return badPassword(user, h.cfg)
}

// admitByRole applies the role's rules of the door: network, hours,
// database. The refusals name the rule but not the allowed networks, which
// a holder of stolen credentials should not learn.
func admitByRole(cfg *config.Config, role *config.Role, roleName, source, database string, now time.Time) *Refusal {
	addr, err := netip.ParseAddrPort(source)
	if err != nil || !role.AllowsAddress(addr.Addr()) {
		return &Refusal{Code: codeInvalidAuthorization, Reason: "network_refused",
			Message: fmt.Sprintf("role %q may not connect from %s", roleName, addressKey(source)),
			Hint:    "Connect from the company network (or its VPN); to be allowed elsewhere, ask " + cfg.Contact + "."}
	}
	if !role.AllowsTime(now) {
		return &Refusal{Code: codeInvalidAuthorization, Reason: "outside_hours",
			Message: fmt.Sprintf("role %q may connect only %s", roleName, role.Hours.Describe()),
			Hint:    "Connect within those hours; for urgent work outside them, ask " + cfg.Contact + "."}
	}
	if !role.AllowsDatabase(database) {
		return &Refusal{Code: codeInsufficientPrivilege, Reason: "database_refused",
			Message: fmt.Sprintf("role %q may not connect to database %q", roleName, database),
			Hint:    "Ask " + cfg.Contact + " if your work needs it."}
	}
	return nil
}

func (h *handshake) send(m pgproto3.BackendMessage) error {
	b, err := m.Encode(nil)
	if err != nil {
		return err
	}
	_, err = h.conn.Write(b)
	return err
}

// readPassword reads the client's next authentication message ('p').
func (h *handshake) readPassword(cr *wire.Reader) ([]byte, *Refusal) {
	typ, body, err := cr.Next()
	if err != nil {
		if errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrMessageTooLong) {
			return nil, protocolRefusal("invalid authentication message")
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &Refusal{Code: codeProtocolViolation, Reason: "startup_timeout",
				Message: "authentication did not finish in time", Hint: "Check the network, and that your client can answer SCRAM-SHA-256."}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &Refusal{Reason: "client_closed_during_auth"}
		}
		return nil, &Refusal{Reason: "client_closed_during_auth"}
	}
	if typ != 'p' {
		return nil, protocolRefusal(fmt.Sprintf("expected an authentication message, got message type %q", typ))
	}
	return body, nil
}

func protocolRefusal(what string) *Refusal {
	return &Refusal{Code: codeProtocolViolation, Reason: "protocol_violation",
		Message: "protocol violation: " + what, Hint: "Use a PostgreSQL client library; if yours is one, report this."}
}

func badPassword(user string, cfg *config.Config) *Refusal {
	// The same message whether or not the account exists.
	return &Refusal{Code: codeInvalidPassword, Reason: "bad_password",
		Message: fmt.Sprintf("password authentication failed for user %q", user),
		Hint: "Check the user name and password. Roles with MFA connect with an access credential: run 'sekisho login', then 'sekisho psql' or 'sekisho tunnel'; " +
			"service accounts connect with their client certificate (sslcert, sslkey). " +
			"If you have lost access, ask " + cfg.Contact + "."}
}

func storeRefusal(cfg *config.Config) *Refusal {
	return &Refusal{Code: codeCannotConnect, Reason: "store_unavailable",
		Message: "sekisho cannot check accounts right now", Hint: "Try again shortly; if it persists, tell " + cfg.Contact + "."}
}

func auditRefusal(cfg *config.Config) *Refusal {
	return &Refusal{Code: codeCannotConnect, Reason: "audit_unavailable",
		Message: "sekisho cannot record the audit trail, so it admits no one",
		Hint:    "Tell " + cfg.Contact + ": the audit log is failing."}
}

func hasPQOptions(sm *pgproto3.StartupMessage) bool {
	for k := range sm.Parameters {
		if strings.HasPrefix(k, "_pq_.") {
			return true
		}
	}
	return false
}

func databaseNames(c *config.Config) []string {
	var out []string
	for _, u := range c.Upstreams {
		out = append(out, u.Database)
	}
	sort.Strings(out)
	return out
}
