package proxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/store"
)

func backendPID(t *testing.T, conn *pgconn.PgConn) string {
	t.Helper()
	return string(exec(t, conn, "SELECT pg_backend_pid()")[0].Rows[0][0])
}

func scalar(t *testing.T, conn *pgconn.PgConn, sql string) string {
	t.Helper()
	res := exec(t, conn, sql)
	if len(res) != 1 || len(res[0].Rows) != 1 {
		t.Fatalf("%q: want one row, got %+v", sql, res)
	}
	return string(res[0].Rows[0][0])
}

func TestUpstreamReuseLeavesNothingBehind(t *testing.T) {
	g := startGW(t)
	d := g.direct(t)
	exec(t, d, "CREATE ROLE pool_other NOLOGIN")
	t.Cleanup(func() { _, _ = d.Exec(context.Background(), "DROP ROLE IF EXISTS pool_other").ReadAll() })

	first := g.connect(t)
	pid := backendPID(t, first)
	tz := first.ParameterStatus("TimeZone")
	exec(t, first, "CREATE TEMP TABLE left_behind (v text); INSERT INTO left_behind VALUES ('secret')")
	exec(t, first, "PREPARE left_stmt AS SELECT 1")
	exec(t, first, "SET work_mem = '7MB'; SET myapp.note = 'secret'; SET TimeZone = 'Pacific/Chatham'")
	exec(t, first, "LISTEN left_channel; SELECT pg_advisory_lock(4242)")
	exec(t, first, "BEGIN; DECLARE left_cursor CURSOR WITH HOLD FOR SELECT 1; COMMIT")
	exec(t, first, "SET ROLE pool_other")
	if err := first.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the upstream connection to be kept", func() bool { return g.srv.pool.count() == 1 })

	second := g.connect(t)
	if got := backendPID(t, second); got != pid {
		t.Fatalf("second session has backend %s, want the reused %s", got, pid)
	}
	if got := second.ParameterStatus("TimeZone"); got != tz {
		t.Errorf("second session was told TimeZone %q, want the server's %q", got, tz)
	}
	for sql, want := range map[string]string{
		"SELECT to_regclass('pg_temp.left_behind') IS NULL":                                       "t",
		"SELECT count(*) FROM pg_prepared_statements":                                             "0",
		"SELECT current_setting('work_mem')":                                                      scalar(t, d, "SELECT current_setting('work_mem')"),
		"SELECT coalesce(current_setting('myapp.note', true), '')":                                "",
		"SELECT current_setting('TimeZone') = " + quote(tz):                                       "t",
		"SELECT count(*) FROM pg_listening_channels()":                                            "0",
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()":    "0",
		"SELECT count(*) FROM pg_cursors":                                                         "0",
		"SELECT current_user = session_user AND current_user <> 'pool_other'":                     "t",
		"SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid() AND state = 'active'": "1",
	} {
		if got := scalar(t, second, sql); got != want {
			t.Errorf("after reuse, %s = %q, want %q", sql, got, want)
		}
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func TestUpstreamNotReusedAfterUncleanEnd(t *testing.T) {
	g := startGW(t)
	d := g.direct(t)

	// A session that leaves inside a transaction: its backend is closed,
	// never handed to the next session.
	conn := g.connect(t)
	pid := backendPID(t, conn)
	exec(t, conn, "BEGIN; CREATE TABLE half_done (v int)")
	conn.Close(t.Context())
	waitUntil(t, "the backend of the session left in a transaction to end", func() bool {
		return scalar(t, d, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid) == "0"
	})
	if n := g.srv.pool.count(); n != 0 {
		t.Fatalf("%d connections kept after a session ended inside a transaction", n)
	}
	if got := scalar(t, d, "SELECT to_regclass('half_done') IS NULL"); got != "t" {
		t.Fatal("the unfinished transaction was committed")
	}

	// A kept backend that the server ended while idle is noticed when it
	// is taken: the next session gets a working one.
	conn = g.connect(t)
	pid = backendPID(t, conn)
	conn.Close(t.Context())
	waitUntil(t, "the upstream connection to be kept", func() bool { return g.srv.pool.count() == 1 })
	exec(t, d, "SELECT pg_terminate_backend("+pid+")")
	waitUntil(t, "the kept backend to end", func() bool {
		return scalar(t, d, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid) == "0"
	})
	conn = g.connect(t)
	if got := backendPID(t, conn); got == pid {
		t.Fatal("a terminated backend was handed out")
	}

	// Other startup parameters: another backend.
	conn.Close(t.Context())
	waitUntil(t, "the upstream connection to be kept", func() bool { return g.srv.pool.count() == 1 })
	other, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword)+"&application_name=other_app")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	if got := scalar(t, other, "SELECT current_setting('application_name')"); got != "other_app" {
		t.Fatalf("application_name %q", got)
	}
	if n := g.srv.pool.count(); n != 1 {
		t.Fatalf("a session with other startup parameters took a kept connection (%d left)", n)
	}

	// A reload (the upstream or its credential may have changed) closes
	// the kept connections.
	g.srv.Reload(g.cfg)
	if n := g.srv.pool.count(); n != 0 {
		t.Fatalf("%d connections kept after a reload", n)
	}
}

func TestUpstreamReuseOff(t *testing.T) {
	g := startGW(t, func(c *config.Config, _ *Options) { c.Limits.UpstreamIdleMax = -1 })
	d := g.direct(t)
	conn := g.connect(t)
	pid := backendPID(t, conn)
	conn.Close(t.Context())
	waitUntil(t, "the backend to end", func() bool {
		return scalar(t, d, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid) == "0"
	})
	if n := g.srv.pool.count(); n != 0 {
		t.Fatalf("%d connections kept with upstream_idle_max: -1", n)
	}
}

// TestUpstreamPoolBound: sessions with ever new startup parameters (here
// application_name) cannot make the gateway hold more idle backends than
// upstream_idle_max in all; the oldest make room.
func TestUpstreamPoolBound(t *testing.T) {
	g := startGW(t, func(c *config.Config, _ *Options) { c.Limits.UpstreamIdleMax = 3 })
	for i := range 6 {
		conn, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword)+"&application_name=app"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		exec(t, conn, "SELECT 1")
		conn.Close(t.Context())
		want := min(i+1, 3)
		waitUntil(t, "the pool to settle", func() bool { return g.srv.pool.count() == want })
	}
	d := g.direct(t)
	waitUntil(t, "evicted backends to end", func() bool {
		return scalar(t, d, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'app%'") == "3"
	})
	if got := scalar(t, d, "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_activity WHERE application_name LIKE 'app%'"); got != "app3,app4,app5" {
		t.Fatalf("kept %s, want the three newest", got)
	}
}

// TestUpstreamNotSharedBetweenUsers: some backend state outlives DISCARD
// ALL. A dblink connection opened by name keeps its opener's authority and
// can be used by name with no password; a kept upstream connection must
// therefore go only to the next session of the same gateway user.
func TestUpstreamNotSharedBetweenUsers(t *testing.T) {
	g := startGW(t)
	d := g.direct(t)
	exec(t, d, "CREATE EXTENSION IF NOT EXISTS dblink")
	addUser(t, g.store, "bob", "analyst", "bob-password-123", time.Now().Add(24*time.Hour))

	alice := g.connect(t)
	pid := backendPID(t, alice)
	link := fmt.Sprintf("host=%s port=%d dbname=%s user=%s password=%s", g.cluster.Host, g.cluster.Port, g.db, g.cluster.User, g.cluster.Password)
	exec(t, alice, "SELECT dblink_connect('left_link', "+quote(link)+")")
	if err := alice.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "alice's upstream connection to be kept", func() bool { return g.srv.pool.count() == 1 })

	bob, err := pgconn.Connect(t.Context(), g.url("bob", "bob-password-123"))
	if err != nil {
		t.Fatal(err)
	}
	if got := backendPID(t, bob); got == pid {
		t.Fatalf("bob was handed alice's kept backend %s", pid)
	}
	if got := scalar(t, bob, "SELECT coalesce(array_to_string(dblink_get_connections(), ','), '')"); got != "" {
		t.Fatalf("bob's session sees dblink connections %q left by alice", got)
	}
	if err := bob.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "both upstream connections to be kept", func() bool { return g.srv.pool.count() == 2 })

	// Reuse still works for the same user.
	again := g.connect(t)
	if got := backendPID(t, again); got != pid {
		t.Fatalf("alice's next session has backend %s, want her kept %s", got, pid)
	}
	if err := again.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "alice's upstream connection to be kept again", func() bool { return g.srv.pool.count() == 2 })

	// Under another role (single sign-on may map the account anew), the
	// same user does not get what her earlier role left behind.
	if _, err := g.store.UpdateUser(t.Context(), testUser, func(u *store.User) error { u.Role = "admin"; return nil }); err != nil {
		t.Fatal(err)
	}
	moved := g.connect(t)
	if got := backendPID(t, moved); got == pid {
		t.Fatalf("alice as admin was handed the backend she left as analyst (%s)", pid)
	}
}
