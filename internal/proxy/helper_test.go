package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pglocal"
	"github.com/sekisho/sekisho/internal/pgtest"
	"github.com/sekisho/sekisho/internal/store"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines of the proxy still running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of goroutines still inside this
// package's code, after giving them a few seconds to finish: every session
// goroutine must end with its session.
func leakedGoroutines() string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "sekisho/internal/proxy.") && !strings.Contains(g, "leakedGoroutines") && !strings.Contains(g, "TestMain") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const (
	testUser     = "alice"
	testPassword = "alice-password-123"
)

// recorder is an audit sink that keeps every event for assertions.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
	fail   bool
}

func (r *recorder) Record(e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return fmt.Errorf("recorder set to fail")
	}
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) setFail(v bool) {
	r.mu.Lock()
	r.fail = v
	r.mu.Unlock()
}

// waitFor returns the first event matching pred, waiting up to 10 s.
func (r *recorder) waitFor(t *testing.T, what string, pred func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if pred(e) {
				r.mu.Unlock()
				return e
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("no audit event %s; have %d events: %+v", what, len(r.events), r.events)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gw is a gateway started for one test, in front of a fresh database.
type gw struct {
	srv     *Server
	addr    string
	db      string
	cluster *pglocal.Cluster
	audit   *recorder
	store   *store.SQLite
	cfg     *config.Config
	caPath  string
	now     *fakeClock
}

type gwOption func(*config.Config, *Options)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func withTLS() gwOption {
	return func(c *config.Config, _ *Options) { c.Listen.AllowPlaintext = false }
}

func withIdle(d time.Duration) gwOption {
	return func(c *config.Config, _ *Options) { c.Limits.IdleTimeout = config.Duration(d) }
}

func withInspector(f func(Principal) Inspector) gwOption {
	return func(_ *config.Config, o *Options) { o.Inspect = f }
}

func startGW(t *testing.T, opts ...gwOption) *gw {
	t.Helper()
	c, db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pw, []byte(c.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`
state_dir: state
listen:
  address: 127.0.0.1:0
  allow_plaintext: true
contact: security@example.jp
roles:
  analyst: {networks: [127.0.0.0/8], databases: ["*"], statements: [all], read: ["*"], write: ["*"], functions: ["*"], features: [all]}
  admin: {networks: [127.0.0.0/8], databases: ["*"], statements: [all], read: ["*"], write: ["*"], functions: ["*"], features: [all]}
upstreams:
  - database: %s
    host: %s
    port: %d
    user: %s
    password_file: upstream.pw
    tls: disable
`, db, c.Host, c.Port, c.User)
	cfg, err := config.Parse([]byte(yaml), dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	addUser(t, st, testUser, "analyst", testPassword, time.Now().Add(24*time.Hour))
	rec := &recorder{}
	clock := &fakeClock{}
	o := Options{Config: cfg, Store: st, Audit: rec, Now: clock.Now,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	for _, f := range opts {
		f(cfg, &o)
	}
	if r := os.Getenv("SEKISHO_TEST_RELAY"); r != "" {
		cfg.Limits.Relay = r // .ci/run runs the package once more with goroutines
	}
	if err := cfg.Validate(); err != nil { // options may change what Validate compiles
		t.Fatal(err)
	}
	g := &gw{db: db, cluster: c, audit: rec, store: st, cfg: cfg, now: clock}
	if !cfg.Listen.AllowPlaintext {
		o.TLS, g.caPath, err = ServerTLS(cfg)
		if err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := WrapProxyProtocol(raw, cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	})
	g.srv, g.addr = srv, ln.Addr().String()
	return g
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("gateway log: %s", p)
	return len(p), nil
}

func addUser(t *testing.T, st store.Store, name, role, password string, expires time.Time) {
	t.Helper()
	v, err := identity.NewVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(t.Context(), store.User{Name: name, Role: role, Verifier: v, Expires: expires, Created: time.Now(), CreatedBy: "test"}); err != nil {
		t.Fatal(err)
	}
}

// url is a libpq URL to the gateway.
func (g *gw) url(user, password string) string {
	host, port, _ := net.SplitHostPort(g.addr)
	mode := "disable"
	extra := ""
	if g.caPath != "" {
		mode = "verify-full"
		extra = "&sslrootcert=" + g.caPath
	}
	return fmt.Sprintf("postgres://%s:%s@%s:%s/%s?sslmode=%s%s", user, password, host, port, g.db, mode, extra)
}

func (g *gw) connect(t *testing.T) *pgconn.PgConn {
	t.Helper()
	conn, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
	if err != nil {
		t.Fatalf("connect through gateway: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// direct connects to the upstream without the gateway (for checks).
func (g *gw) direct(t *testing.T) *pgconn.PgConn {
	t.Helper()
	conn, err := pgconn.Connect(t.Context(), g.cluster.ConnString(g.db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(t *testing.T, conn *pgconn.PgConn, sql string) []*pgconn.Result {
	t.Helper()
	res, err := conn.Exec(t.Context(), sql).ReadAll()
	if err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
	return res
}

func sqlState(err error) string {
	if pe, ok := err.(*pgconn.PgError); ok {
		return pe.Code
	}
	var pe *pgconn.PgError
	if asPgError(err, &pe) {
		return pe.Code
	}
	return ""
}

// waitUntil polls cond until it holds or 10 s pass.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
