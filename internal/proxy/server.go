// Package proxy is the gateway's PostgreSQL front door: the listener, the
// startup and authentication of each client, the connection to its
// upstream with credentials only the gateway holds, and the relay of every
// protocol message between them.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/mask"
	"github.com/sekisho/sekisho/internal/netio"
	"github.com/sekisho/sekisho/internal/pki"
	"github.com/sekisho/sekisho/internal/store"
)

// Options build a Server.
type Options struct {
	Config *config.Config
	Store  store.Store
	Audit  audit.Sink
	Log    *slog.Logger
	// TLS is the listener's TLS configuration; nil means no TLS, which the
	// config must then allow (loopback plaintext only).
	TLS *tls.Config
	// Inspect makes the Inspector for a new session; nil means the data
	// policy of the config (the only choice outside tests).
	Inspect func(Principal) Inspector
	// Now is the clock (tests inject one); nil means time.Now.
	Now func() time.Time
}

// Server accepts clients and runs their sessions.
type Server struct {
	cfg      atomic.Pointer[config.Config]
	store    store.Store
	audit    audit.Sink
	log      *slog.Logger
	tls      atomic.Pointer[listenerTLS] // nil: no TLS
	inspect  func(Principal) Inspector
	now      func() time.Time
	decoyKey []byte
	// credentialKey derives the SCRAM salt of users' access credentials.
	credentialKey []byte
	// deviceCA signs managed devices' client certificates; the listener
	// asks clients for one (and verifies it against this CA) when they
	// have it.
	deviceCA *pki.DeviceCA

	catalogs  catalogs
	decisions decisionCache
	pool      upstreamPool

	loopMu     sync.Mutex
	loop       *eventLoop // made for the first plaintext session
	loopClosed bool
	// goroutineRelays counts the sessions relayed by goroutines (TLS on
	// either side): the loop busy-polls only while they leave it a
	// processor (see eventLoop.roll).
	goroutineRelays atomic.Int64
	sso             ssoState
	masker          *mask.Masker

	nextID   atomic.Uint64
	wg       sync.WaitGroup
	failures *addressLimiter

	mu        sync.Mutex
	sessions  map[uint32]*Session // by the BackendKeyData process ID we gave the client
	handshake int                 // connections not yet sessions
	listeners []net.Listener
	closing   bool

	stopReaper chan struct{}
}

// New makes a Server.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Config == nil || o.Store == nil || o.Audit == nil {
		return nil, errors.New("proxy: config, store and audit sink are required")
	}
	if o.TLS == nil && !o.Config.Listen.AllowPlaintext {
		return nil, errors.New("proxy: no TLS configuration and plaintext is not allowed")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	key, err := o.Store.Secret(ctx, "decoy-verifier-key", func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	})
	if err != nil {
		return nil, err
	}
	// The pseudonym key stays in the state store, so pseudonyms are the
	// same after a restart and on every gateway sharing the store.
	pkey, err := o.Store.Secret(ctx, "pseudonym-key", func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	})
	if err != nil {
		return nil, err
	}
	ckey, err := o.Store.Secret(ctx, "credential-salt-key", func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	})
	if err != nil {
		return nil, err
	}
	s := &Server{
		store: o.Store, audit: o.Audit, log: o.Log, inspect: o.Inspect, now: o.Now,
		decoyKey: key, credentialKey: ckey, sessions: make(map[uint32]*Session), failures: newAddressLimiter(),
		masker: mask.New(pkey),
	}
	if s.inspect == nil {
		// Every session is decided by the data policy unless a test gives
		// its own inspector: there is no mode that relays undecided.
		s.inspect = s.policyInspector
	}
	s.deviceCA, err = pki.EnsureDeviceCA(o.Config.StateDir)
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	if o.TLS != nil {
		if err := s.ReloadTLS(o.TLS); err != nil {
			return nil, err
		}
	}
	s.cfg.Store(o.Config)
	return s, nil
}

// Config returns the configuration new sessions use.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// Reload makes new sessions use c. Sessions already running keep the
// configuration they started with. The listen address and TLS files are
// read only at start.
func (s *Server) Reload(c *config.Config) {
	old := s.cfg.Swap(c)
	// A reload may change an upstream's address or the gateway's
	// credential for it: connections kept for reuse are not reused.
	s.pool.flush()
	if old.Listen.Address != c.Listen.Address || old.Listen.AllowPlaintext != c.Listen.AllowPlaintext {
		s.log.Warn("listen.address and listen.allow_plaintext take effect at the next restart")
	}
	s.log.Info("config reloaded", "upstreams", len(c.Upstreams))
}

// listenerTLS is the listener's TLS configuration with the channel binding
// data of its certificate; they change together on reload.
type listenerTLS struct {
	cfg      *tls.Config
	certHash []byte // nil: SCRAM-SHA-256-PLUS is not offered
}

// ReloadTLS makes new connections use c (a renewed certificate); live
// sessions keep theirs.
func (s *Server) ReloadTLS(c *tls.Config) error {
	c = c.Clone()
	// A managed device presents its client certificate; others present
	// none. Which roles require one is decided after authentication.
	pool := x509.NewCertPool()
	pool.AddCert(s.deviceCA.Cert)
	c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
	l := &listenerTLS{cfg: c}
	if len(c.Certificates) > 0 && len(c.Certificates[0].Certificate) > 0 {
		leaf, err := x509.ParseCertificate(c.Certificates[0].Certificate[0])
		if err != nil {
			return fmt.Errorf("proxy: listener certificate: %w", err)
		}
		// Without it, SCRAM-SHA-256-PLUS is not offered; logins still work.
		if l.certHash, err = identity.CertificateHash(leaf); err != nil {
			s.log.Warn("channel binding unavailable for the listener certificate", "err", err)
		}
	}
	s.tls.Store(l)
	return nil
}

// Serve accepts connections on ln until it is closed or Shutdown is called.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errors.New("proxy: server is shutting down")
	}
	s.listeners = append(s.listeners, ln)
	if s.stopReaper == nil {
		stop := make(chan struct{})
		s.stopReaper = stop
		go s.reapIdle(stop)
	}
	s.mu.Unlock()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		conn = netio.Wrap(conn) // a no-op when Listen already did it
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			conn.Close()
			return nil
		}
		s.handshake++
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handleConn(conn)
		}()
	}
}

// eventLoop returns the server's event loop, started on first use; nil
// when there is none (closed, or the system refused one: sessions are
// then relayed by goroutines).
func (s *Server) eventLoop() *eventLoop {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	if s.loop == nil && !s.loopClosed {
		l, err := newEventLoop(s)
		if err != nil {
			s.log.Warn("event loop unavailable; relaying every session with goroutines", "err", err)
			s.loopClosed = true
			return nil
		}
		s.loop = l
	}
	return s.loop
}

func (s *Server) closeLoop() {
	s.loopMu.Lock()
	l := s.loop
	s.loop, s.loopClosed = nil, true
	s.loopMu.Unlock()
	if l != nil {
		l.close()
	}
}

// SessionCount returns the number of admitted sessions.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Shutdown stops accepting and waits for sessions to end. When ctx ends
// first, the remaining sessions are ended with 57P01 and their running
// statements are cancelled upstream.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	if s.stopReaper != nil {
		close(s.stopReaper)
		s.stopReaper = nil
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.pool.close(); s.catalogs.closeChecks(); s.closeLoop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	live := make([]*Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		live = append(live, ss)
	}
	s.mu.Unlock()
	for _, ss := range live {
		ss.Kill(&Refusal{Code: codeAdminShutdown, Fatal: true, Reason: "shutdown",
			Message: "terminating connection because the sekisho gateway is shutting down",
			Hint:    "Reconnect in a moment."})
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return errors.New("proxy: sessions still running after shutdown")
	}
	return ctx.Err()
}

// reapIdle ends sessions that have been idle (nothing outstanding upstream,
// nothing from the client) longer than their idle timeout. One ticker for
// the server keeps timers off the per-statement path.
func (s *Server) reapIdle(stop <-chan struct{}) {
	tick := time.Second
	if idle := s.cfg.Load().Limits.IdleTimeout.D(); idle > 0 && idle/4 < tick {
		tick = max(idle/4, 10*time.Millisecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		s.pool.expire(s.cfg.Load().Limits.UpstreamIdleTimeout.D(), s.now())
		s.failures.prune(s.now(), s.cfg.Load().Limits.StartupTimeout.D()+s.cfg.Load().Login.FailureWindow.D())
		s.mu.Lock()
		var idle []*Session
		for _, ss := range s.sessions {
			if limit := ss.cfg.Limits.IdleTimeout.D(); limit > 0 && ss.idleFor(now) > limit {
				idle = append(idle, ss)
			}
		}
		s.mu.Unlock()
		for _, ss := range idle {
			ss.Kill(&Refusal{Code: codeIdleSessionTimeout, Fatal: true, Reason: "idle_timeout",
				Message: fmt.Sprintf("terminating connection due to idle-session timeout (%s)", ss.cfg.Limits.IdleTimeout.D()),
				Hint:    "Reconnect when you need the database again."})
		}
	}
}

// register gives a new session a BackendKeyData key of its own. The client
// never learns the upstream's key; a CancelRequest must present ours.
func (s *Server) register(ss *Session) error {
	secret := make([]byte, 4)
	var pidb [4]byte
	for {
		if _, err := rand.Read(pidb[:]); err != nil {
			return err
		}
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		pid := binary.BigEndian.Uint32(pidb[:]) & 0x7fffffff
		if pid == 0 {
			continue
		}
		s.mu.Lock()
		if _, taken := s.sessions[pid]; !taken {
			ss.keyPID, ss.keySecret = pid, secret
			s.sessions[pid] = ss
			s.handshake--
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
	}
}

func (s *Server) unregister(ss *Session) {
	s.mu.Lock()
	if s.sessions[ss.keyPID] == ss {
		delete(s.sessions, ss.keyPID)
	}
	s.mu.Unlock()
}

// handleCancel acts on a CancelRequest. A key that matches no session does
// nothing: the requester learns nothing either way.
func (s *Server) handleCancel(req *pgproto3.CancelRequest, source string) {
	s.mu.Lock()
	ss := s.sessions[req.ProcessID]
	s.mu.Unlock()
	ok := ss != nil && subtle.ConstantTimeCompare(ss.keySecret, req.SecretKey) == 1
	ev := audit.Event{Type: audit.Cancel, Source: source, Outcome: audit.OutcomeRefused, Reason: "unknown_key"}
	if ok {
		ev.Session, ev.User, ev.Database, ev.Outcome, ev.Reason = ss.id, ss.principal.User, ss.principal.Database, audit.OutcomeOK, ""
	}
	s.record(ev)
	if ok {
		if err := ss.cancelUpstream(); err != nil {
			s.log.Warn("upstream cancel failed", "session", ss.id, "err", err)
		}
	}
}

// record writes an audit event; a failure is logged (callers that must
// fail closed check the error themselves).
func (s *Server) record(e audit.Event) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	err := s.audit.Record(e)
	if err != nil {
		s.log.Error("audit record failed", "type", string(e.Type), "err", err)
	}
	return err
}

func (s *Server) slotsFree() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)+s.handshake <= s.cfg.Load().Limits.MaxSessions
}

var errAuditFailed = fmt.Errorf("audit unavailable")

// EndUserSessions ends every live session of a user with 57P01 (an
// administrator ended it), cancelling statements in progress upstream, and
// returns how many there were. New connections are the store's business:
// disable the account first, then end its sessions.
func (s *Server) EndUserSessions(user, why string) int {
	return s.endSessions(func(p Principal) bool { return p.User == user }, "suspended", why,
		"Ask your sekisho administrator why your account was suspended.")
}

// EndDeviceSessions ends every live session that came from a managed
// device (when it is revoked).
func (s *Server) EndDeviceSessions(device, why string) int {
	return s.endSessions(func(p Principal) bool { return p.Device != "" && p.Device == device }, "device_revoked", why,
		"The device was revoked; ask your sekisho administrator.")
}

// EndSessionsExcept ends every live session whose user keep does not
// spare (the gateway lock spares break-glass accounts).
func (s *Server) EndSessionsExcept(keep func(user string) bool, why string) int {
	return s.endSessions(func(p Principal) bool { return !keep(p.User) }, "gateway_locked", why,
		"Only emergency (break-glass) accounts may connect now; ask your sekisho administrator when access returns.")
}

func (s *Server) endSessions(match func(Principal) bool, reason, why, hint string) int {
	s.mu.Lock()
	var victims []*Session
	for _, ss := range s.sessions {
		if match(ss.principal) {
			victims = append(victims, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range victims {
		ss.Kill(&Refusal{Code: codeAdminShutdown, Fatal: true, Reason: reason,
			Message: "terminating connection: the session was ended by an administrator (" + why + ")",
			Hint:    strings.Replace(hint, "your sekisho administrator", ss.cfg.Contact, 1)})
	}
	return len(victims)
}
