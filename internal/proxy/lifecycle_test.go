package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sekisho/sekisho/internal/audit"
)

// refuseWord is a test Inspector: it refuses statements containing a word
// and upper-cases text columns named "shout" (marking statements that
// mention one as masked).
type refuseWord struct{ word string }

func (r refuseWord) Statement(st *Statement) *Refusal {
	if strings.Contains(st.Text, r.word) {
		return &Refusal{Code: codeInsufficientPrivilege, Reason: "test_policy",
			Message: "statement refused by the test policy", Hint: "Do not say " + r.word + "."}
	}
	st.Masked = strings.Contains(st.Text, "shout")
	return nil
}

func (r refuseWord) Result(rd *pgproto3.RowDescription) (RowFilter, *Refusal) {
	for i, f := range rd.Fields {
		if string(f.Name) == "shout" && f.Format == 0 {
			return func(values [][]byte) *Refusal {
				if values[i] != nil {
					values[i] = bytes.ToUpper(values[i])
				}
				return nil
			}, nil
		}
	}
	return nil, nil
}

func (r refuseWord) Message(*pgproto3.ErrorResponse) bool { return false }

func TestInspectorSeam(t *testing.T) {
	g := startGW(t, withInspector(func(Principal) Inspector { return refuseWord{"forbidden"} }))
	conn := g.connect(t)
	exec(t, conn, "CREATE TABLE t (id int, v text)")

	// A refused simple query inside a transaction aborts it, as an error
	// from PostgreSQL would: nothing before it can be committed.
	exec(t, conn, "BEGIN; INSERT INTO t VALUES (1, 'kept?')")
	_, err := conn.Exec(t.Context(), "SELECT 'forbidden'").ReadAll()
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "42501" || pe.Message != "statement refused by the test policy" {
		t.Fatalf("refused query: %v", err)
	}
	if conn.TxStatus() != 'E' {
		t.Fatalf("transaction status after refusal = %q, want E (failed)", conn.TxStatus())
	}
	_, err = conn.Exec(t.Context(), "SELECT 1").ReadAll()
	if sqlState(err) != "25P02" {
		t.Fatalf("statement in the aborted transaction: %v", err)
	}
	exec(t, conn, "ROLLBACK")
	r := exec(t, conn, "SELECT count(*) FROM t")
	if string(r[0].Rows[0][0]) != "0" {
		t.Fatal("the insert before the refusal was committed")
	}

	// Extended protocol: the refused Parse fails in order within a pipeline.
	p := conn.StartPipeline(t.Context())
	p.SendQueryParams("SELECT 1", nil, nil, nil, nil)
	p.SendQueryParams("SELECT 'forbidden'", nil, nil, nil, nil)
	p.SendQueryParams("SELECT 3", nil, nil, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	res, err := p.GetResults()
	if err != nil {
		t.Fatal(err)
	}
	first := res.(*pgconn.ResultReader).Read()
	if first.Err != nil || string(first.Rows[0][0]) != "1" {
		t.Fatalf("first statement: %+v", first)
	}
	res, err = p.GetResults()
	if err == nil {
		_, err = res.(*pgconn.ResultReader).Close()
	}
	if sqlState(err) != "42501" {
		t.Fatalf("refused pipelined statement: %v", err)
	}
	p.Close()
	exec(t, conn, "SELECT 1")
	g.audit.waitFor(t, "refused statement", func(e audit.Event) bool {
		return e.Type == audit.Statement && e.Outcome == audit.OutcomeRefused && e.SQLState == "42501" && e.Protocol == "extended"
	})

	// Rows pass through the filter.
	r = exec(t, conn, "SELECT 'quiet' AS shout, 'quiet' AS calm")
	if string(r[0].Rows[0][0]) != "QUIET" || string(r[0].Rows[0][1]) != "quiet" {
		t.Fatalf("row filter: %q", r[0].Rows[0])
	}

	// Rows of a masked statement executed without a Describe are still
	// filtered: the gateway describes the portal itself, and the client
	// sees no RowDescription it did not ask for.
	if _, err := conn.Prepare(t.Context(), "p", "SELECT 'quiet' AS shout", nil); err != nil {
		t.Fatal(err)
	}
	if err := conn.SyncConn(t.Context()); err != nil {
		t.Fatal(err)
	}
	hc, err := conn.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	fe := pgproto3.NewFrontend(hc.Conn, hc.Conn)
	fe.Send(&pgproto3.Bind{PreparedStatement: "p"})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	hc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []string
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, fmt.Sprintf("%T", m))
		if d, ok := m.(*pgproto3.DataRow); ok && string(d.Values[0]) != "QUIET" {
			t.Fatalf("row not filtered: %q", d.Values[0])
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if want := "[*pgproto3.BindComplete *pgproto3.DataRow *pgproto3.CommandComplete *pgproto3.ReadyForQuery]"; fmt.Sprint(got) != want {
		t.Fatalf("messages %v, want %s", got, want)
	}
}

func TestUpstreamRestart(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	exec(t, conn, "SELECT 1")
	if err := g.cluster.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(t.Context(), "SELECT 1").ReadAll()
	if err == nil {
		t.Fatal("a query on a session whose upstream restarted succeeded")
	}
	// Either PostgreSQL's own shutdown notice or the gateway's: both are
	// server errors, never a hang or a gateway crash.
	if s := sqlState(err); s == "" && !strings.Contains(err.Error(), "closed") && !strings.Contains(err.Error(), "EOF") {
		t.Logf("error after restart: %v", err)
	}
	g.audit.waitFor(t, "upstream_lost", func(e audit.Event) bool { return e.Type == audit.SessionEnd && e.Reason == "upstream_lost" })
	// A new session works.
	fresh := g.connect(t)
	exec(t, fresh, "SELECT 1")
}

func TestUpstreamDown(t *testing.T) {
	g := startGW(t)
	g.cfg.Upstreams[0].Port = 1 // nothing listens there
	_, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "08001" || !strings.Contains(pe.Message, "could not connect to the database server") || pe.Hint == "" {
		t.Fatalf("upstream down: %v", err)
	}
	if strings.Contains(pe.Message, "127.0.0.1") || strings.Contains(pe.Message, "refused") {
		t.Fatalf("the refusal leaks internal detail: %q", pe.Message)
	}
}

func TestIdleTimeout(t *testing.T) {
	g := startGW(t, withIdle(300*time.Millisecond))
	conn := g.connect(t)
	// A statement that runs longer than the idle timeout is not idle.
	exec(t, conn, "SELECT pg_sleep(0.6)")
	start := time.Now()
	g.audit.waitFor(t, "idle_timeout", func(e audit.Event) bool { return e.Type == audit.SessionEnd && e.Reason == "idle_timeout" })
	if _, err := conn.Exec(t.Context(), "SELECT 1").ReadAll(); err == nil {
		t.Fatal("query after idle timeout succeeded")
	}
	t.Logf("idle session ended %s after its last statement", time.Since(start))
}

// upstreamQueries counts backends running the given query text.
func upstreamQueries(t *testing.T, g *gw, like string) int {
	d := g.direct(t)
	r, err := d.Exec(t.Context(), fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%s' AND pid <> pg_backend_pid()", like)).ReadAll()
	d.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(string(r[0].Rows[0][0]), &n)
	return n
}

func TestClientGoneMidResult(t *testing.T) {
	g := startGW(t)
	c := rawSession(t, g)
	q, _ := (&pgproto3.Query{String: "SELECT generate_series(1, 50000000) AS i, repeat('x', 100)"}).Encode(nil)
	c.Write(q)
	buf := make([]byte, 64<<10)
	if _, err := io.ReadAtLeast(c, buf, 1024); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitUntil(t, "upstream query gone", func() bool { return upstreamQueries(t, g, "SELECT generate_series(1, 50000000)%") == 0 })
	g.audit.waitFor(t, "session end", func(e audit.Event) bool { return e.Type == audit.SessionEnd && e.Reason == "client_closed" })
}

func TestClientGoneWhileQueryRuns(t *testing.T) {
	g := startGW(t)
	c := rawSession(t, g)
	q, _ := (&pgproto3.Query{String: "SELECT pg_sleep(60)"}).Encode(nil)
	c.Write(q)
	waitUntil(t, "sleep running", func() bool { return upstreamQueries(t, g, "SELECT pg_sleep(60)") == 1 })
	c.Close()
	// The gateway notices the closed client only on its next read; it
	// must then cancel the upstream statement rather than leave it running.
	waitUntil(t, "upstream sleep cancelled", func() bool { return upstreamQueries(t, g, "SELECT pg_sleep(60)") == 0 })
}

func TestClientGoneMidCopy(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	exec(t, conn, "CREATE TABLE sink (v text)")
	c := rawSession(t, g)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.Query{String: "COPY sink FROM STDIN"})
	fe.Flush()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := fe.Receive()
	if _, ok := m.(*pgproto3.CopyInResponse); err != nil || !ok {
		t.Fatalf("want CopyInResponse, got %#v %v", m, err)
	}
	fe.Send(&pgproto3.CopyData{Data: []byte("row one\nrow two\n")})
	fe.Flush()
	c.Close()
	waitUntil(t, "upstream COPY gone", func() bool { return upstreamQueries(t, g, "COPY sink%") == 0 })
	r := exec(t, conn, "SELECT count(*) FROM sink")
	if string(r[0].Rows[0][0]) != "0" {
		t.Fatalf("a COPY abandoned by its client was committed: %s rows", r[0].Rows[0][0])
	}
}

func TestCancelWithWrongKey(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "SELECT pg_sleep(1.5)").ReadAll()
		done <- err
	}()
	waitUntil(t, "sleep running", func() bool { return upstreamQueries(t, g, "SELECT pg_sleep(1.5)") == 1 })
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	msg := binary.BigEndian.AppendUint32(nil, 16)
	msg = binary.BigEndian.AppendUint32(msg, 80877102)
	msg = binary.BigEndian.AppendUint32(msg, conn.PID())
	msg = binary.BigEndian.AppendUint32(msg, 0xdeadbeef) // not the key we were given
	c.Write(msg)
	io.Copy(io.Discard, c)
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("a cancel with a wrong key cancelled the query: %v", err)
	}
	g.audit.waitFor(t, "refused cancel", func(e audit.Event) bool {
		return e.Type == audit.Cancel && e.Outcome == audit.OutcomeRefused && e.Reason == "unknown_key"
	})
}

func TestShutdownEndsSessions(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "SELECT pg_sleep(60)").ReadAll()
		done <- err
	}()
	waitUntil(t, "sleep running", func() bool { return upstreamQueries(t, g, "SELECT pg_sleep(60)") == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	g.srv.Shutdown(ctx)
	select {
	case err := <-done:
		var pe *pgconn.PgError
		if !asPgError(err, &pe) || pe.Code != "57P01" || !strings.Contains(pe.Message, "shutting down") {
			t.Fatalf("session at shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("session survived shutdown")
	}
	waitUntil(t, "upstream sleep cancelled", func() bool { return upstreamQueries(t, g, "SELECT pg_sleep(60)") == 0 })
	if _, err := net.DialTimeout("tcp", g.addr, time.Second); err == nil {
		t.Fatal("listener still accepts after shutdown")
	}
}

func TestAuditFailureRefuses(t *testing.T) {
	g := startGW(t)
	g.audit.setFail(true)
	_, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "08001" || !strings.Contains(pe.Message, "audit") {
		t.Fatalf("connect with a failing audit log: %v", err)
	}
}

func TestPsqlAndPgbench(t *testing.T) {
	psql, err := osexec.LookPath("psql")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("psql not found")
		}
		t.Skip("psql not found")
	}
	pgbench, err := osexec.LookPath("pgbench")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pgbench not found")
		}
		t.Skip("pgbench not found")
	}
	g := startGW(t, withTLS())
	url := g.url(testUser, testPassword)
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := osexec.CommandContext(t.Context(), name, args...)
		cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// libpq binds the login to the gateway's certificate (SCRAM-SHA-256-PLUS).
	out := run(psql, url+"&channel_binding=require", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", "CREATE TABLE p (id int, name text)", "-c", `\copy p FROM PROGRAM 'seq 1 100 | sed "s/$/\tn/"'`, "-c", "SELECT count(*), sum(id) FROM p")
	if !strings.Contains(out, "100|5050") {
		t.Fatalf("psql output: %s", out)
	}
	out = run(psql, url, "-X", "-At", "-c", `\copy (SELECT id FROM p WHERE id <= 3 ORDER BY id) TO STDOUT WITH (FORMAT csv)`)
	if strings.TrimSpace(out) != "1\n2\n3" {
		t.Fatalf("psql \\copy out: %q", out)
	}
	run(pgbench, "-i", "-s", "1", "-q", url)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		out = run(pgbench, "-S", "-M", mode, "-c", "4", "-j", "2", "-t", "200", "-n", url)
		if !strings.Contains(out, "number of failed transactions: 0") || !strings.Contains(out, "number of transactions actually processed: 800/800") {
			t.Fatalf("pgbench -M %s:\n%s", mode, out)
		}
	}
	out = run(pgbench, "-S", "-C", "-c", "4", "-t", "25", "-n", url)
	if !strings.Contains(out, "actually processed: 100/100") {
		t.Fatalf("pgbench -C:\n%s", out)
	}
}

func TestHugeUpstreamRowIsRefusedClearly(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	_, err := conn.Exec(t.Context(), "SELECT repeat('x', 70 * 1024 * 1024)").ReadAll()
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "54000" || !strings.Contains(pe.Message, "larger than the gateway's limit") {
		t.Fatalf("huge row: %v", err)
	}
	other := g.connect(t)
	exec(t, other, "SELECT 1")
}

func TestPreparedStatementLimit(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	for i := 0; i < maxPreparedStatements; i++ {
		if _, err := conn.Prepare(t.Context(), fmt.Sprintf("s%d", i), "SELECT 1", nil); err != nil {
			t.Fatalf("prepare %d: %v", i, err)
		}
	}
	_, err := conn.Prepare(t.Context(), "one_too_many", "SELECT 1", nil)
	if sqlState(err) != "54000" {
		t.Fatalf("prepare beyond the limit: %v", err)
	}
	// Re-preparing a known name and the unnamed statement still work.
	exec(t, conn, "DEALLOCATE s0")
	if _, err := conn.Prepare(t.Context(), "", "SELECT 2", nil); err != nil {
		t.Fatal(err)
	}
}

func TestUpstreamTLS(t *testing.T) {
	tests := []struct {
		name   string
		mode   string
		caFile func(g *gw) string
		wantOK bool
	}{
		{name: "require", mode: "require", wantOK: true},
		{name: "verify-full with the server's CA", mode: "verify-full", caFile: func(g *gw) string { return g.cluster.CAPath() }, wantOK: true},
		{name: "verify-full with another CA", mode: "verify-full", caFile: func(g *gw) string {
			// The gateway's own CA did not issue the server's certificate.
			if _, _, err := ServerTLS(g.cfg); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(g.cfg.StateDir, "ca.crt")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGW(t)
			g.cfg.Upstreams[0].TLS = tt.mode
			if tt.caFile != nil {
				g.cfg.Upstreams[0].CAFile = tt.caFile(g)
			}
			conn, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
			if !tt.wantOK {
				if sqlState(err) != "08001" {
					t.Fatalf("connect with an untrusted upstream certificate: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			r := exec(t, conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
			if string(r[0].Rows[0][0]) != "t" {
				t.Fatal("the upstream connection is not encrypted")
			}
			// The cancel travels to the upstream over TLS as well.
			done := make(chan error, 1)
			go func() {
				_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)").ReadAll()
				done <- err
			}()
			waitUntil(t, "sleep running", func() bool { return upstreamQueries(t, g, "SELECT pg_sleep(30)") == 1 })
			if err := conn.CancelRequest(t.Context()); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if sqlState(err) != "57014" {
					t.Fatalf("cancel over TLS: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("cancel over TLS did not arrive")
			}
		})
	}
}

func TestShutdownWithClientThatStoppedReading(t *testing.T) {
	g := startGW(t)
	c := rawSession(t, g)
	// Ask for far more than the socket buffers hold, and never read it.
	q, _ := (&pgproto3.Query{String: "SELECT generate_series(1, 10000000), repeat('x', 200)"}).Encode(nil)
	c.Write(q)
	waitUntil(t, "upstream query running", func() bool { return upstreamQueries(t, g, "SELECT generate_series(1, 10000000)%") == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	g.srv.Shutdown(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %s with a client that does not read", d)
	}
	waitUntil(t, "upstream query gone", func() bool { return upstreamQueries(t, g, "SELECT generate_series(1, 10000000)%") == 0 })
}

func TestAuditFailureEndsLiveSessions(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	exec(t, conn, "SELECT 1")
	g.audit.setFail(true)
	_, err := conn.Exec(t.Context(), "SELECT 2").ReadAll()
	if err == nil {
		// The answer may have been on its way; the session must not
		// survive to run another statement unaudited.
		_, err = conn.Exec(t.Context(), "SELECT 3").ReadAll()
	}
	if err == nil {
		t.Fatal("a session kept running statements that could not be audited")
	}
	g.audit.setFail(false)
	waitUntil(t, "session ended", func() bool { return g.srv.SessionCount() == 0 })
}
