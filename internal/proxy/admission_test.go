package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pires/go-proxyproto"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/pki"
	"github.com/sekisho/sekisho/internal/store"
)

func TestAuthenticationAndAdmission(t *testing.T) {
	g := startGW(t)
	addUser(t, g.store, "expired", "analyst", "expired-password-1", time.Now().Add(-time.Hour))
	addUser(t, g.store, "norole", "ghost-role", "norole-password-1", time.Now().Add(time.Hour))
	tests := []struct {
		name, user, password, db string
		code, reason, inMessage  string
	}{
		{name: "wrong password", user: testUser, password: "nope", code: "28P01", reason: "bad_password", inMessage: `password authentication failed for user "alice"`},
		{name: "unknown user looks the same", user: "mallory", password: "nope", code: "28P01", reason: "bad_password", inMessage: `password authentication failed for user "mallory"`},
		{name: "expired account", user: "expired", password: "expired-password-1", code: "28000", reason: "account_expired", inMessage: "expired on"},
		{name: "expired account with wrong password says nothing of expiry", user: "expired", password: "x", code: "28P01", reason: "bad_password", inMessage: "password authentication failed"},
		{name: "role not configured", user: "norole", password: "norole-password-1", code: "28000", reason: "role_not_configured", inMessage: "ghost-role"},
		{name: "unknown database", user: testUser, password: testPassword, db: "nosuchdb", code: "3D000", reason: "unknown_database", inMessage: `"nosuchdb" is not served`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := g.url(tt.user, tt.password)
			if tt.db != "" {
				url = strings.Replace(url, "/"+g.db+"?", "/"+tt.db+"?", 1)
			}
			_, err := pgconn.Connect(t.Context(), url)
			var pe *pgconn.PgError
			if !asPgError(err, &pe) {
				t.Fatalf("connect: want a server error, got %v", err)
			}
			if pe.Code != tt.code || !strings.Contains(pe.Message, tt.inMessage) || pe.Hint == "" {
				t.Fatalf("got %s %q hint %q; want %s containing %q and a hint", pe.Code, pe.Message, pe.Hint, tt.code, tt.inMessage)
			}
			g.audit.waitFor(t, "refusal "+tt.reason, func(e audit.Event) bool {
				return e.Type == audit.ConnectionRefused && e.User == tt.user && e.Reason == tt.reason
			})
		})
	}

	// Expiry is checked at every new connection: move the clock past it.
	conn := g.connect(t)
	exec(t, conn, "SELECT 1")
	g.now.Set(time.Now().Add(48 * time.Hour))
	_, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
	if sqlState(err) != "28000" {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestStartupParameters(t *testing.T) {
	g := startGW(t)
	cfg, err := pgconn.ParseConfig(g.url(testUser, testPassword))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["options"] = "-c role=postgres"
	_, err = pgconn.ConnectConfig(t.Context(), cfg)
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, `"options"`) {
		t.Fatalf("options parameter: %v", err)
	}
	cfg, _ = pgconn.ParseConfig(g.url(testUser, testPassword))
	cfg.RuntimeParams["application_name"] = "registry-report"
	conn, err := pgconn.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	r := exec(t, conn, "SHOW application_name")
	if string(r[0].Rows[0][0]) != "registry-report" {
		t.Fatalf("application_name = %q", r[0].Rows[0][0])
	}
}

func TestTLS(t *testing.T) {
	g := startGW(t, withTLS())
	conn := g.connect(t) // sslmode=verify-full against the generated CA
	r := exec(t, conn, "SELECT 1")
	if string(r[0].Rows[0][0]) != "1" {
		t.Fatal("query over TLS failed")
	}
	// Over TLS the login is bound to the gateway's certificate.
	bound, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword)+"&channel_binding=require")
	if err != nil {
		t.Fatalf("channel_binding=require: %v", err)
	}
	bound.Close(t.Context())

	// Downgrade: a plaintext startup is refused when TLS is required.
	plain := strings.Replace(g.url(testUser, testPassword), "sslmode=verify-full", "sslmode=disable", 1)
	_, err = pgconn.Connect(t.Context(), plain)
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "28000" || !strings.Contains(pe.Message, "requires TLS") {
		t.Fatalf("plaintext startup: %v", err)
	}
	g.audit.waitFor(t, "tls_required", func(e audit.Event) bool { return e.Reason == "tls_required" })

	// A second SSLRequest inside TLS is a protocol violation.
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(sslRequest())
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'S' {
		t.Fatalf("SSLRequest answer %q %v", b, err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.Write(sslRequest())
	e := readError(t, tc)
	if e.Code != "08P01" || !strings.Contains(e.Message, "second SSLRequest") {
		t.Fatalf("second SSLRequest: %+v", e)
	}
	// The files the gateway generated are private.
	for _, f := range []string{"ca.key", "server.key", "ca.crt"} {
		if mode := fileMode(t, g.cfg.StateDir+"/"+f); mode != 0o600 {
			t.Errorf("%s mode %o, want 600", f, mode)
		}
	}
}

func sslRequest() []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)
}

// readError reads backend messages until an ErrorResponse (or fails).
func readError(t *testing.T, c net.Conn) *pgproto3.ErrorResponse {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("reading for an ErrorResponse: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			cp := *e
			return &cp
		}
	}
}

func TestBadInput(t *testing.T) {
	g := startGW(t)
	tests := []struct {
		name   string
		send   []byte
		code   string
		reason string
	}{
		{name: "http before startup", send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), code: "08P01", reason: "protocol_violation"},
		{name: "protocol 2", send: []byte{0, 0, 0, 9, 0, 2, 0, 0, 0}, code: "08P01", reason: "protocol_violation"},
		{name: "oversized startup", send: []byte{0, 1, 0, 0, 0, 3, 0, 0}, code: "08P01", reason: "protocol_violation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tt.send)
			e := readError(t, c)
			if e.Code != tt.code || e.Hint == "" {
				t.Fatalf("got %+v", e)
			}
			g.audit.waitFor(t, tt.reason, func(e audit.Event) bool { return e.Type == audit.ConnectionRefused && e.Reason == tt.reason })
		})
	}

	t.Run("truncated startup then close", func(t *testing.T) {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{0, 0, 0, 40, 0, 3, 0, 0, 'u'})
		c.Close()
		g.audit.waitFor(t, "client_closed", func(e audit.Event) bool { return e.Reason == "client_closed" })
	})

	sessionTests := []struct {
		name string
		msg  []byte
		code string
	}{
		{name: "unknown message type", msg: []byte{'!', 0, 0, 0, 4}, code: "08P01"},
		{name: "bad length", msg: []byte{'Q', 0, 0, 0, 1}, code: "08P01"},
		{name: "oversized message", msg: []byte{'Q', 0x7f, 0, 0, 0}, code: "54000"},
		{name: "query without terminator", msg: []byte{'Q', 0, 0, 0, 6, 'a', 'b'}, code: "08P01"},
		{name: "malformed bind", msg: []byte{'B', 0, 0, 0, 6, 0, 0}, code: "08P01"},
	}
	for _, tt := range sessionTests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawSession(t, g)
			c.Write(tt.msg)
			e := readError(t, c)
			if e.Code != tt.code || e.Severity != "FATAL" {
				t.Fatalf("got %+v, want FATAL %s", e, tt.code)
			}
			// The gateway and other sessions are unaffected.
			other := g.connect(t)
			exec(t, other, "SELECT 1")
		})
	}
}

// rawSession authenticates with pgconn and hands back the raw socket of a
// plaintext session, for sending hand-made messages.
func rawSession(t *testing.T, g *gw) net.Conn {
	t.Helper()
	conn, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SyncConn(t.Context()); err != nil {
		t.Fatal(err)
	}
	hc, err := conn.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return hc.Conn
}

func TestFunctionCallRefused(t *testing.T) {
	g := startGW(t)
	c := rawSession(t, g)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.FunctionCall{Function: 1299 /* now() */, ResultFormatCode: 0})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m.(*pgproto3.ErrorResponse)
	if !ok || e.Code != "0A000" || !strings.Contains(e.Message, "FunctionCall") || e.Hint == "" {
		t.Fatalf("FunctionCall answer: %#v", m)
	}
	m, err = fe.Receive()
	if rfq, ok := m.(*pgproto3.ReadyForQuery); err != nil || !ok || rfq.TxStatus != 'I' {
		t.Fatalf("after refusal: %#v %v", m, err)
	}
	// The session goes on.
	fe.Send(&pgproto3.Query{String: "SELECT 41 + 1"})
	fe.Flush()
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := m.(*pgproto3.DataRow); ok {
			if string(d.Values[0]) != "42" {
				t.Fatalf("got %q", d.Values[0])
			}
			break
		}
	}
	g.audit.waitFor(t, "refused FunctionCall", func(e audit.Event) bool {
		return e.Type == audit.Statement && e.Outcome == audit.OutcomeRefused && e.SQLState == "0A000"
	})
}

func TestStartupTimeout(t *testing.T) {
	g := startGW(t, func(c *config.Config, _ *Options) { c.Limits.StartupTimeout = config.Duration(300 * time.Millisecond) })
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Say nothing: the gateway must give up on us and close.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("the gateway did not close a silent connection: %v", err)
	}
	g.audit.waitFor(t, "startup_timeout", func(e audit.Event) bool {
		return e.Type == audit.ConnectionRefused && e.Reason == "startup_timeout"
	})
}

func TestListenerCertificateReload(t *testing.T) {
	g := startGW(t, withTLS())
	old := g.connect(t)
	dir := t.TempDir()
	if err := pki.EnsureCA(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.ServerCertFile), filepath.Join(dir, pki.ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.srv.ReloadTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}); err != nil {
		t.Fatal(err)
	}
	// New connections get the new certificate, with channel binding to it.
	g.caPath = filepath.Join(dir, pki.CACertFile)
	fresh, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword)+"&channel_binding=require")
	if err != nil {
		t.Fatalf("after reload: %v", err)
	}
	fresh.Close(t.Context())
	// The session that started before the reload goes on.
	exec(t, old, "SELECT 1")
}

func TestLockout(t *testing.T) {
	g := startGW(t, func(c *config.Config, _ *Options) {
		c.Login.MaxFailures = 3
		c.Login.Lockout = config.Duration(10 * time.Minute)
	})
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	g.now.Set(now)
	for _, name := range []string{testUser, "ghost"} { // an account, and a name without one
		for i := 0; i < 3; i++ {
			if _, err := pgconn.Connect(t.Context(), g.url(name, "wrong")); sqlState(err) != "28P01" {
				t.Fatalf("%s failure %d: %v", name, i, err)
			}
		}
		g.audit.waitFor(t, "account.locked "+name, func(e audit.Event) bool { return e.Type == audit.AccountLocked && e.User == name })
	}
	// Locked: even the right password is refused, and the message for the
	// account is the same as for the name without one.
	_, errAlice := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
	_, errGhost := pgconn.Connect(t.Context(), g.url("ghost", "anything"))
	var pa, pg *pgconn.PgError
	if !asPgError(errAlice, &pa) || !asPgError(errGhost, &pg) {
		t.Fatalf("locked: %v / %v", errAlice, errGhost)
	}
	if pa.Code != "28000" || !strings.Contains(pa.Message, "too many failed logins") || pa.Hint == "" {
		t.Fatalf("locked account: %+v", pa)
	}
	if strings.ReplaceAll(pa.Message, testUser, "X") != strings.ReplaceAll(pg.Message, "ghost", "X") || pa.Hint != pg.Hint {
		t.Fatalf("the lockout tells an account from a name without one:\n%q\n%q", pa.Message, pg.Message)
	}
	// After the lockout the right password works, and clears the count.
	g.now.Set(now.Add(11 * time.Minute))
	c, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
	if err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	c.Close(t.Context())
	if _, err := pgconn.Connect(t.Context(), g.url(testUser, "wrong")); sqlState(err) != "28P01" {
		t.Fatalf("one failure after a good login: %v", err)
	}
	if c, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword)); err != nil {
		t.Fatalf("one failure must not lock: %v", err)
	} else {
		c.Close(t.Context())
	}
}

func TestFailuresPerAddress(t *testing.T) {
	g := startGW(t, func(c *config.Config, _ *Options) { c.Login.FailuresPerAddress = 4 })
	for i := 0; i < 4; i++ {
		// A different name each time: no name reaches its own limit.
		if _, err := pgconn.Connect(t.Context(), g.url(fmt.Sprintf("spray%d", i), "guess")); sqlState(err) != "28P01" {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	_, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "08004" || !strings.Contains(pe.Message, "too many failed logins from your address") || pe.Hint == "" {
		t.Fatalf("after four failures from one address: %v", err)
	}
	g.audit.waitFor(t, "address_rate_limited", func(e audit.Event) bool { return e.Reason == "address_rate_limited" })
}

func TestRoleRulesAtTheDoor(t *testing.T) {
	g := startGW(t)

	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	monday10 := time.Date(2026, 11, 23, 10, 0, 0, 0, tokyo)
	tests := []struct {
		name      string
		role      config.Role
		at        time.Time
		code      string
		reason    string
		inMessage string
	}{
		{name: "outside the company network", role: config.Role{Networks: []string{"10.0.0.0/8"}, Databases: []string{"*"}},
			code: "28000", reason: "network_refused", inMessage: `role "analyst" may not connect from 127.0.0.1`},
		{name: "no networks at all", role: config.Role{Databases: []string{"*"}},
			code: "28000", reason: "network_refused", inMessage: "may not connect from"},
		{name: "outside office hours", role: config.Role{Networks: []string{"127.0.0.0/8"}, Databases: []string{"*"},
			Hours: &config.Hours{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "08:00", To: "20:00", Zone: "Asia/Tokyo"}},
			at: time.Date(2026, 11, 20, 21, 0, 0, 0, tokyo), code: "28000", reason: "outside_hours", inMessage: "may connect only mon,tue,wed,thu,fri 08:00-20:00 Asia/Tokyo"},
		{name: "on saturday", role: config.Role{Networks: []string{"127.0.0.0/8"}, Databases: []string{"*"},
			Hours: &config.Hours{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "08:00", To: "20:00", Zone: "Asia/Tokyo"}},
			at: monday10.Add(-2 * 24 * time.Hour), code: "28000", reason: "outside_hours", inMessage: "may connect only"},
		{name: "within office hours", role: config.Role{Networks: []string{"127.0.0.0/8"}, Databases: []string{"*"},
			Hours: &config.Hours{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "08:00", To: "20:00", Zone: "Asia/Tokyo"}},
			at: monday10},
		{name: "a database the role does not have", role: config.Role{Networks: []string{"127.0.0.0/8"}, Databases: []string{"registry"}},
			code: "42501", reason: "database_refused", inMessage: "may not connect to database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.role
			cfg := *g.cfg
			cfg.Roles = map[string]*config.Role{"analyst": &r}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			g.srv.Reload(&cfg)
			defer g.srv.Reload(g.cfg)
			g.now.Set(tt.at)
			defer g.now.Set(time.Time{})
			c, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
			if tt.code == "" {
				if err != nil {
					t.Fatalf("allowed connection refused: %v", err)
				}
				c.Close(t.Context())
				return
			}
			var pe *pgconn.PgError
			if !asPgError(err, &pe) || pe.Code != tt.code || !strings.Contains(pe.Message, tt.inMessage) || pe.Hint == "" {
				t.Fatalf("got %v; want %s containing %q with a hint", err, tt.code, tt.inMessage)
			}
			if strings.Contains(pe.Message+pe.Hint, "10.0.0.0") {
				t.Fatalf("the refusal reveals the allowed networks: %q", pe.Message+pe.Hint)
			}
			g.audit.waitFor(t, tt.reason, func(e audit.Event) bool { return e.Type == audit.ConnectionRefused && e.Reason == tt.reason })
		})
	}

}

// dialThroughBalancer connects as a load balancer would: it writes a PROXY
// protocol v2 header naming client as the real source, then speaks
// PostgreSQL.
func dialThroughBalancer(t *testing.T, g *gw, client string, header bool) (*pgconn.PgConn, error) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(g.url(testUser, testPassword))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil || !header {
			return c, err
		}
		src, _ := net.ResolveTCPAddr("tcp", client)
		h := proxyproto.HeaderProxyFromAddrs(2, src, c.RemoteAddr())
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	return pgconn.ConnectConfig(t.Context(), cfg)
}

func TestProxyProtocol(t *testing.T) {
	t.Run("from a trusted balancer the real client address decides", func(t *testing.T) {
		g := startGW(t, func(c *config.Config, _ *Options) {
			c.Listen.ProxyProtocolFrom = []string{"127.0.0.1"}
			c.Roles["analyst"] = &config.Role{Networks: []string{"203.0.113.0/24"}, Databases: []string{"*"}}
		})
		c, err := dialThroughBalancer(t, g, "203.0.113.9:5555", true)
		if err != nil {
			t.Fatalf("client in an allowed network behind the balancer: %v", err)
		}
		c.Close(t.Context())
		g.audit.waitFor(t, "accepted with the real source", func(e audit.Event) bool {
			return e.Type == audit.ConnectionAccepted && e.Source == "203.0.113.9:5555"
		})
		_, err = dialThroughBalancer(t, g, "198.51.100.1:4444", true)
		var pe *pgconn.PgError
		if !asPgError(err, &pe) || pe.Code != "28000" || !strings.Contains(pe.Message, "from 198.51.100.1") {
			t.Fatalf("client outside the allowed network behind the balancer: %v", err)
		}
		// The balancer itself must send the header.
		if _, err := dialThroughBalancer(t, g, "", false); err == nil {
			t.Fatal("a connection from the balancer without a PROXY header was accepted")
		}
	})
	t.Run("from anyone else a header is refused", func(t *testing.T) {
		g := startGW(t, func(c *config.Config, _ *Options) {
			c.Listen.ProxyProtocolFrom = []string{"10.9.9.9"}
			c.Roles["analyst"] = &config.Role{Networks: []string{"127.0.0.0/8", "203.0.113.0/24"}, Databases: []string{"*"}}
		})
		if _, err := dialThroughBalancer(t, g, "203.0.113.9:5555", true); err == nil {
			t.Fatal("a PROXY header from an untrusted address was accepted")
		}
		c, err := dialThroughBalancer(t, g, "", false)
		if err != nil {
			t.Fatalf("a direct client without a header: %v", err)
		}
		c.Close(t.Context())
	})
}

// suspendDuringLogin is a store that disables an account right after the
// gateway first reads it: a suspension landing while the client
// authenticates, before its session is registered.
type suspendDuringLogin struct {
	*store.SQLite
	name  string
	fired bool
}

func (s *suspendDuringLogin) User(ctx context.Context, name string) (store.User, error) {
	u, err := s.SQLite.User(ctx, name)
	if err == nil && name == s.name && !s.fired {
		s.fired = true
		_, err = s.SQLite.UpdateUser(ctx, name, func(x *store.User) error { x.Disabled = true; return nil })
	}
	return u, err
}

func TestSuspensionDuringLoginIsNotMissed(t *testing.T) {
	var sd *suspendDuringLogin
	g := startGW(t, func(_ *config.Config, o *Options) {
		sd = &suspendDuringLogin{SQLite: o.Store.(*store.SQLite), name: testUser}
		o.Store = sd
	})
	_, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "28000" || !strings.Contains(pe.Message, "is disabled") {
		t.Fatalf("a login racing its suspension was admitted: %v", err)
	}
	if !sd.fired {
		t.Fatal("the store hook did not run")
	}
	if n := g.srv.SessionCount(); n != 0 {
		t.Fatalf("%d sessions registered", n)
	}
}
