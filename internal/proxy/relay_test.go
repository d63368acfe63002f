package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/sqlscope"
)

func TestSimpleQueryAndAudit(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	if conn.ParameterStatus("server_version") == "" || conn.ParameterStatus("client_encoding") != "UTF8" {
		t.Fatalf("ParameterStatus not relayed: server_version=%q client_encoding=%q",
			conn.ParameterStatus("server_version"), conn.ParameterStatus("client_encoding"))
	}
	res := exec(t, conn, "CREATE TABLE hcp (id int, email text); INSERT INTO hcp SELECT i, 'user' || i || '@example.jp' FROM generate_series(1, 5) i; SELECT email FROM hcp WHERE email <> 'secret@example.jp' ORDER BY id")
	if len(res) != 3 || len(res[2].Rows) != 5 || string(res[2].Rows[0][0]) != "user1@example.jp" {
		t.Fatalf("unexpected results: %+v", res)
	}
	e := g.audit.waitFor(t, "statement with rows", func(e audit.Event) bool {
		return e.Type == audit.Statement && strings.Contains(e.Statement, "SELECT email FROM hcp")
	})
	if strings.Contains(e.Statement, "secret@example.jp") || !strings.Contains(e.Statement, "email <> $") {
		t.Fatalf("audit statement keeps a literal: %q", e.Statement)
	}
	if e.Rows != 5 || e.Outcome != audit.OutcomeOK || e.User != testUser || e.Protocol != "simple" {
		t.Fatalf("audit event: %+v", e)
	}
	g.audit.waitFor(t, "connection accepted", func(e audit.Event) bool {
		return e.Type == audit.ConnectionAccepted && e.User == testUser && e.Role == "analyst" && e.Database == g.db
	})

	_, err := conn.Exec(t.Context(), "SELECT 1/0").ReadAll()
	if sqlState(err) != "22012" {
		t.Fatalf("division by zero: got %v", err)
	}
	g.audit.waitFor(t, "failed statement", func(e audit.Event) bool {
		return e.Type == audit.Statement && e.Outcome == audit.OutcomeError && e.SQLState == "22012"
	})
	// Notices pass through.
	var notices []string
	var mu sync.Mutex
	cfg, _ := pgconn.ParseConfig(g.url(testUser, testPassword))
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { mu.Lock(); notices = append(notices, n.Message); mu.Unlock() }
	c2, err := pgconn.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(context.Background())
	exec(t, c2, "DO $$ BEGIN RAISE NOTICE 'hello from upstream'; END $$")
	mu.Lock()
	defer mu.Unlock()
	if len(notices) != 1 || notices[0] != "hello from upstream" {
		t.Fatalf("notices = %q", notices)
	}
	conn.Close(t.Context())
	g.audit.waitFor(t, "session end", func(e audit.Event) bool {
		return e.Type == audit.SessionEnd && e.Reason == "client_terminate"
	})
}

func TestExtendedPipeline(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	exec(t, conn, "CREATE TABLE t (id int primary key, v text)")
	if _, err := conn.Prepare(t.Context(), "ins", "INSERT INTO t VALUES ($1, $2)", nil); err != nil {
		t.Fatal(err)
	}
	p := conn.StartPipeline(t.Context())
	for i := 1; i <= 50; i++ {
		p.SendQueryPrepared("ins", [][]byte{[]byte(fmt.Sprint(i)), []byte(fmt.Sprintf("v%d", i))}, nil, nil)
	}
	p.SendQueryParams("SELECT count(*), sum(id) FROM t WHERE v LIKE $1", [][]byte{[]byte("v%")}, nil, nil, []int16{1, 0})
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	var last *pgconn.ResultReader
	for i := 0; i < 51; i++ {
		res, err := p.GetResults()
		if err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		rr, ok := res.(*pgconn.ResultReader)
		if !ok {
			t.Fatalf("result %d: %T", i, res)
		}
		if i < 50 {
			if _, err := rr.Close(); err != nil {
				t.Fatal(err)
			}
		} else {
			last = rr
		}
	}
	rows := last.Read()
	if rows.Err != nil || len(rows.Rows) != 1 {
		t.Fatalf("count: %+v", rows)
	}
	// Binary count(*): int8 big-endian 50.
	if !bytes.Equal(rows.Rows[0][0], []byte{0, 0, 0, 0, 0, 0, 0, 50}) || string(rows.Rows[0][1]) != "1275" {
		t.Fatalf("count/sum = %v %q", rows.Rows[0][0], rows.Rows[0][1])
	}
	if res, err := p.GetResults(); err != nil {
		t.Fatal(err)
	} else if _, ok := res.(*pgconn.PipelineSync); !ok {
		t.Fatalf("want PipelineSync, got %T", res)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	g.audit.waitFor(t, "extended statement", func(e audit.Event) bool {
		return e.Type == audit.Statement && e.Protocol == "extended" && strings.HasPrefix(e.Statement, "SELECT count(*)") && e.Rows == 1
	})
	// An error inside a pipeline skips the rest until Sync, as upstream.
	p = conn.StartPipeline(t.Context())
	p.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
	p.SendQueryParams("SELECT 2", nil, nil, nil, nil)
	_ = p.Sync()
	res, err := p.GetResults()
	if err == nil {
		_, err = res.(*pgconn.ResultReader).Close()
	}
	if sqlState(err) != "22012" {
		t.Fatalf("first pipelined statement: %v", err)
	}
	p.Close()
	// Portals with a row limit.
	res2 := conn.ExecParams(t.Context(), "SELECT id FROM t ORDER BY id", nil, nil, nil, nil).Read()
	if res2.Err != nil || len(res2.Rows) != 50 {
		t.Fatalf("after pipeline: %+v", res2.Err)
	}
}

func TestCopyAllFormats(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	exec(t, conn, "CREATE TABLE src (id int, name text, born date); INSERT INTO src SELECT i, '名前' || i || E'\\ttab', date '1980-01-01' + i FROM generate_series(1, 2000) i")
	direct := g.direct(t)
	for _, format := range []string{"text", "csv", "binary"} {
		t.Run(format, func(t *testing.T) {
			var viaGW, viaDirect bytes.Buffer
			out := fmt.Sprintf("COPY src TO STDOUT (FORMAT %s)", format)
			tag, err := conn.CopyTo(t.Context(), &viaGW, out)
			if err != nil {
				t.Fatal(err)
			}
			if tag.RowsAffected() != 2000 {
				t.Fatalf("COPY TO rows = %d", tag.RowsAffected())
			}
			if _, err := direct.CopyTo(t.Context(), &viaDirect, out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(viaGW.Bytes(), viaDirect.Bytes()) {
				t.Fatalf("COPY TO through the gateway differs from direct (%d vs %d bytes)", viaGW.Len(), viaDirect.Len())
			}
			table := "dst_" + format
			exec(t, conn, fmt.Sprintf("CREATE TABLE %s (LIKE src)", table))
			tag, err = conn.CopyFrom(t.Context(), bytes.NewReader(viaGW.Bytes()), fmt.Sprintf("COPY %s FROM STDIN (FORMAT %s)", table, format))
			if err != nil {
				t.Fatal(err)
			}
			if tag.RowsAffected() != 2000 {
				t.Fatalf("COPY FROM rows = %d", tag.RowsAffected())
			}
			r := exec(t, direct, fmt.Sprintf("SELECT count(*) FROM (SELECT * FROM src EXCEPT SELECT * FROM %s) d", table))
			if string(r[0].Rows[0][0]) != "0" {
				t.Fatalf("copied table differs from source")
			}
		})
	}
	// A COPY FROM that fails on bad data reports the upstream's error and
	// leaves the session usable.
	_, err := conn.CopyFrom(t.Context(), strings.NewReader("not-a-number\tx\t2000-01-01\n"), "COPY src FROM STDIN")
	if sqlState(err) != "22P02" {
		t.Fatalf("bad COPY data: %v", err)
	}
	exec(t, conn, "SELECT 1")
}

func TestCancelRunningQuery(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)").ReadAll()
		done <- err
	}()
	direct := g.direct(t)
	waitUntil(t, "pg_sleep running upstream", func() bool {
		r, err := direct.Exec(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'").ReadAll()
		return err == nil && string(r[0].Rows[0][0]) == "1"
	})
	if err := conn.CancelRequest(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if sqlState(err) != "57014" {
			t.Fatalf("cancelled query: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the cancel did not reach the upstream")
	}
	if time.Since(start) > 25*time.Second {
		t.Fatal("query ran to completion")
	}
	g.audit.waitFor(t, "cancel", func(e audit.Event) bool { return e.Type == audit.Cancel && e.Outcome == audit.OutcomeOK })
	exec(t, conn, "SELECT 1")
}

func TestListenNotify(t *testing.T) {
	g := startGW(t)
	got := make(chan *pgconn.Notification, 1)
	cfg, err := pgconn.ParseConfig(g.url(testUser, testPassword))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { got <- n }
	listener, err := pgconn.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	exec(t, listener, "LISTEN registry_updates")
	sender := g.connect(t)
	exec(t, sender, "NOTIFY registry_updates, 'case 42 closed'")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := listener.WaitForNotification(ctx); err != nil {
		t.Fatal(err)
	}
	n := <-got
	if n.Channel != "registry_updates" || n.Payload != "case 42 closed" {
		t.Fatalf("notification %+v", n)
	}
}

func TestConcurrentSessions(t *testing.T) {
	g := startGW(t)
	const n = 200
	conns := make([]*pgconn.PgConn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgconn.Connect(t.Context(), g.url(testUser, testPassword))
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			r, err := c.Exec(t.Context(), fmt.Sprintf("SELECT %d, pg_backend_pid()", i)).ReadAll()
			if err != nil {
				errs <- err
				return
			}
			if string(r[0].Rows[0][0]) != fmt.Sprint(i) {
				errs <- fmt.Errorf("session %d got %q: crossed sessions", i, r[0].Rows[0][0])
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := g.srv.SessionCount(); got != n {
		t.Errorf("SessionCount = %d, want %d", got, n)
	}
	for _, c := range conns {
		if c != nil {
			c.Close(context.Background())
		}
	}
	waitUntil(t, "all sessions ended", func() bool { return g.srv.SessionCount() == 0 })
}

// pendingOf returns the gateway's count of outstanding sync points and
// queued statements for the newest live session.
func pendingOf(t *testing.T, g *gw) (int, int) {
	t.Helper()
	g.srv.mu.Lock()
	var newest *Session
	for _, ss := range g.srv.sessions {
		if newest == nil || ss.id > newest.id {
			newest = ss
		}
	}
	g.srv.mu.Unlock()
	if newest == nil {
		t.Fatal("no session")
	}
	newest.mu.Lock()
	defer newest.mu.Unlock()
	return newest.pending, len(newest.runs)
}

// TestExtendedCopyKeepsTheBooks runs COPY FROM STDIN through the extended
// protocol as libpq's PQexecParams does (a Sync right after Execute, which
// PostgreSQL ignores during the copy), then checks that the gateway's
// accounting is back to zero and the next statement is audited as itself.
func TestExtendedCopyKeepsTheBooks(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	exec(t, conn, "CREATE TABLE sink (v text)")
	c := rawSession(t, g)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.Parse{Query: "COPY sink FROM STDIN"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*pgproto3.CopyInResponse); ok {
			break
		}
	}
	fe.Send(&pgproto3.CopyData{Data: []byte("one\ntwo\n")})
	fe.Send(&pgproto3.CopyDone{})
	fe.Send(&pgproto3.Sync{})
	fe.Flush()
	sawComplete := false
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if cc, ok := m.(*pgproto3.CommandComplete); ok && string(cc.CommandTag) == "COPY 2" {
			sawComplete = true
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if !sawComplete {
		t.Fatal("no COPY 2")
	}
	waitUntil(t, "books balanced", func() bool { p, n := pendingOf(t, g); return p == 0 && n == 0 })
	fe.Send(&pgproto3.Query{String: "SELECT v FROM sink WHERE v <> 'x'"})
	fe.Flush()
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	g.audit.waitFor(t, "the select after the copy, as itself", func(e audit.Event) bool {
		return e.Type == audit.Statement && strings.HasPrefix(e.Statement, "SELECT v FROM sink") && e.Rows == 2
	})
	g.audit.waitFor(t, "the copy", func(e audit.Event) bool {
		return e.Type == audit.Statement && e.Statement == "COPY sink FROM STDIN" && e.Rows == 2 && e.Protocol == "extended"
	})
}

func TestStatementDuringCopyIsAProtocolViolation(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	exec(t, conn, "CREATE TABLE sink (v text)")
	c := rawSession(t, g)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.Query{String: "COPY sink FROM STDIN"})
	fe.Flush()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*pgproto3.CopyInResponse); ok {
			break
		}
	}
	fe.Send(&pgproto3.CopyData{Data: []byte("kept?\n")})
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	fe.Flush()
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("no error before the connection closed: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			if e.Code != "08P01" || e.Severity != "FATAL" || !strings.Contains(e.Message, "during COPY FROM STDIN") {
				t.Fatalf("got %+v", e)
			}
			break
		}
	}
	waitUntil(t, "COPY gone upstream", func() bool { return upstreamQueries(t, g, "COPY sink%") == 0 })
	if r := exec(t, conn, "SELECT count(*) FROM sink"); string(r[0].Rows[0][0]) != "0" {
		t.Fatal("the abandoned COPY was committed")
	}
}

// TestSplitMessagesAndSlowReader sends a pipeline one byte per write (so
// every message arrives in pieces across reads) and then reads a result far
// larger than the socket buffers in small, slow pieces (so the relay must
// stop reading the upstream and resume): every row arrives, in order.
func TestSplitMessagesAndSlowReader(t *testing.T) {
	g := startGW(t)
	c := rawSession(t, g)
	const rows = 60000
	var msgs []byte
	msgs, _ = (&pgproto3.Parse{Query: "SELECT i, repeat('x', 200) FROM generate_series(1, $1::int) i"}).Encode(msgs)
	msgs, _ = (&pgproto3.Bind{Parameters: [][]byte{[]byte(strconv.Itoa(rows))}}).Encode(msgs)
	msgs, _ = (&pgproto3.Describe{ObjectType: 'P'}).Encode(msgs)
	msgs, _ = (&pgproto3.Execute{}).Encode(msgs)
	msgs, _ = (&pgproto3.Sync{}).Encode(msgs)
	msgs, _ = (&pgproto3.Query{String: "SELECT 'after'"}).Encode(msgs)
	for i := range msgs {
		if _, err := c.Write(msgs[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	slow := &slowReader{r: c}
	fe := pgproto3.NewFrontend(slow, c)
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	next, ready, after := 1, 0, false
	for ready < 2 {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %d rows: %v", next-1, err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			if ready == 1 {
				after = string(m.Values[0]) == "after"
				continue
			}
			if got := string(m.Values[0]); got != strconv.Itoa(next) {
				t.Fatalf("row %d arrived as %q", next, got)
			}
			next++
		case *pgproto3.ErrorResponse:
			t.Fatalf("error: %s", m.Message)
		case *pgproto3.ReadyForQuery:
			ready++
		}
	}
	if next-1 != rows || !after {
		t.Fatalf("got %d rows of %d, second statement answered: %v", next-1, rows, after)
	}
	if slow.reads < 100 {
		t.Fatalf("the reader was not slow: %d reads", slow.reads)
	}
}

// slowReader reads at most 4 KiB at a time and pauses every 64 reads.
type slowReader struct {
	r     io.Reader
	reads int
}

func (s *slowReader) Read(b []byte) (int, error) {
	s.reads++
	if s.reads%64 == 0 {
		time.Sleep(time.Millisecond)
	}
	return s.r.Read(b[:min(len(b), 4096)])
}

func TestTagRows(t *testing.T) {
	for _, tc := range []struct {
		tag  string
		want int64
	}{
		{"SELECT 5\x00", 5}, {"INSERT 0 5\x00", 5}, {"COPY 733820\x00", 733820}, {"UPDATE 0", 0},
		{"BEGIN\x00", 0}, {"SELECT \x00", 0}, {"SELECT x1\x00", 0}, {"FETCH 99999999999999999999999\x00", 0},
	} {
		if got := tagRows([]byte(tc.tag)); got != tc.want {
			t.Errorf("tagRows(%q) = %d, want %d", tc.tag, got, tc.want)
		}
	}
}

// TestLargeCopyIn sends far more COPY data than the socket buffers hold,
// faster than the server stores it, so the relay must stop reading the
// client while the upstream catches up; every row arrives.
func TestLargeCopyIn(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	exec(t, conn, "CREATE TABLE big (id int, pad text)")
	const rows = 200000
	var data bytes.Buffer
	pad := strings.Repeat("y", 100)
	for i := range rows {
		fmt.Fprintf(&data, "%d\t%s\n", i, pad)
	}
	tag, err := conn.CopyFrom(t.Context(), &data, "COPY big FROM STDIN")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != rows {
		t.Fatalf("COPY FROM rows = %d, want %d", tag.RowsAffected(), rows)
	}
	res := conn.ExecParams(t.Context(), "SELECT count(DISTINCT id), sum(length(pad)) FROM big", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := string(res.Rows[0][0]) + " " + string(res.Rows[0][1]); got != fmt.Sprintf("%d %d", rows, rows*100) {
		t.Fatalf("table holds %s, want %d rows of 100 bytes", got, rows)
	}
}

// The memo of the last statement text gives what computing it afresh
// gives, whatever came before (the empty text included).
func TestClientStateTextMemo(t *testing.T) {
	var cs clientState
	for _, q := range []string{"", "SELECT 1", "SELECT 1", "SELECT 2", "", "", "SELECT $1", "SELECT 'a'", "SELECT 1"} {
		text, sh, red := cs.text([]byte(q))
		want := sqlscope.ShapeOf(q)
		if text != q || sh != want || red != sqlscope.RedactShape(q, want) {
			t.Fatalf("%q: got %q %+v %q", q, text, sh, red)
		}
	}
}

// TestStatementTimes checks the times on statement events: the event loop
// stamps a statement with the wake-up that read it and its end with the
// one that read the answer, the goroutine relay reads the clock. Either
// way a statement that sleeps 200 ms lasts at least that long, and its
// event's time lies between sending it and receiving the answer.
func TestStatementTimes(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	for _, proto := range []string{"simple", "extended"} {
		before := time.Now()
		if proto == "simple" {
			exec(t, conn, "SELECT pg_sleep(0.2)")
		} else if _, err := conn.ExecParams(t.Context(), "SELECT pg_sleep($1)", [][]byte{[]byte("0.2")}, nil, nil, nil).Close(); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		e := g.audit.waitFor(t, proto+" pg_sleep", func(e audit.Event) bool {
			return e.Type == audit.Statement && e.Protocol == proto && strings.Contains(e.Statement, "pg_sleep")
		})
		if e.Duration < 200 || e.Duration > float64(after.Sub(before).Milliseconds())+1 {
			t.Errorf("%s: duration %.3f ms, want at least 200 and at most the %v the client waited", proto, e.Duration, after.Sub(before))
		}
		if e.Time.Before(before) || e.Time.After(after) {
			t.Errorf("%s: event time %v outside the call (%v to %v)", proto, e.Time, before, after)
		}
	}
}

// TestRepeatedShapesAudited sends statements that differ only in their
// numbers, one after another in a session (the gateway then keeps the
// last one's shape, redaction and decision), between others that do
// not: each event names its own statement, redacted.
func TestRepeatedShapesAudited(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	texts := []struct{ sql, want string }{
		{"SELECT 1 + 2 AS repeated", "SELECT $1 + $2 AS repeated"},
		{"SELECT 3 + 40 AS repeated", "SELECT $1 + $2 AS repeated"},
		{"SELECT 5 + length('secret-five') AS repeated", "SELECT $1 + length($2) AS repeated"},
		{"SELECT 6 + 7 AS repeated", "SELECT $1 + $2 AS repeated"},
		{"SELECT 8 + 9 + 10 AS repeated", "SELECT $1 + $2 + $3 AS repeated"},
		{"SELECT 11 + 12 AS repeated", "SELECT $1 + $2 AS repeated"},
	}
	for _, tt := range texts {
		exec(t, conn, tt.sql)
	}
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(texts) && time.Now().Before(deadline) {
		got = got[:0]
		g.audit.mu.Lock()
		for _, e := range g.audit.events {
			if e.Type == audit.Statement && strings.HasSuffix(e.Statement, "AS repeated") {
				got = append(got, e.Statement)
			}
		}
		g.audit.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	if len(got) != len(texts) {
		t.Fatalf("%d statement events, want %d: %q", len(got), len(texts), got)
	}
	for i, tt := range texts {
		if got[i] != tt.want {
			t.Errorf("event %d: %q, want %q", i, got[i], tt.want)
		}
	}
}
