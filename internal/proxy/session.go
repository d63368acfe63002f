package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sync/errgroup"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/sqlscope"
	"github.com/sekisho/sekisho/internal/wire"
)

// flushAt is how much the relay buffers before it writes even while more
// input is waiting: big enough to fill a TCP segment train, small enough to
// keep a session's memory bounded whatever the result size.
const flushAt = 64 << 10

// maxPreparedStatements bounds the statement names a session may keep, so
// the gateway's memory per session stays bounded.
const maxPreparedStatements = 10000

// Session is one admitted client relayed to its upstream.
type Session struct {
	srv       *Server
	cfg       *config.Config
	id        uint64
	principal Principal
	inspector Inspector
	// passesResults: the inspector changes no result of this session
	// (see resultPasser).
	passesResults bool

	client net.Conn
	cr     *wire.Reader
	up     *upstreamConn
	ur     *wire.Reader

	keyPID    uint32
	keySecret []byte

	cw clientWriter  // only the upstream→client direction writes while the relay runs
	uw []byte        // only the client→upstream direction writes upstream
	cs clientState   // the client→upstream direction's own
	us upstreamState // the upstream→client direction's own

	// refusalToken marks the stand-in statement forwarded in place of a
	// refused one; it is random per session so no client can forge it.
	refusalToken string
	refusalSeq   int

	mu      sync.Mutex
	pending int    // Query, Sync and FunctionCall messages not yet answered by ReadyForQuery
	readies uint64 // ReadyForQuery messages relayed (the sync units answered)
	runs    []*run // statements in the order the upstream will answer them
	killed  *Refusal
	// wasKilled is set with killed: the relay checks it after every
	// message, without the lock.
	wasKilled atomic.Bool
	// handedOff: the upstream connection went back for reuse; nothing of
	// this session (Kill, a cancel) may touch it any more. Set under mu
	// and cancelMu, which a cancel in flight holds.
	handedOff bool
	cancelMu  sync.Mutex
	// copyIn is set when the upstream entered COPY FROM STDIN and the
	// client has not yet ended the copy: PostgreSQL ignores Sync and Flush
	// then, so they are not sync points.
	copyIn bool

	started time.Time
	ended   atomic.Bool
	// terminating: the client said goodbye (Terminate), so the relay stops
	// reading the upstream without closing it, which may be reused.
	terminating atomic.Bool
	// onLoop: the event loop relays the session (set under mu).
	onLoop *loopSession
	upTx   byte  // the upstream's last transaction status (upstreamToClient only)
	upExit error // why upstreamToClient returned (read after both directions end)

	// For the idle timeout (checked by Server.reapIdle): when the client
	// last sent something, and when the upstream last became idle.
	lastClient atomic.Int64
	lastReady  atomic.Int64
}

// run is a statement (or a Sync) on its way through the upstream.
type run struct {
	// kind: 'Q' simple query, 'E' Execute, 'S' Sync, 'R' refused Parse,
	// 'D' the client's Describe, 'd' the gateway's own Describe (its
	// answer is for the inspector only), 'c' end-of-COPY marker.
	kind    byte
	masked  bool // an Execute whose rows the inspector must see described
	text    string
	start   time.Time
	rows    int64
	tagRows int64
	err     string
	refusal *Refusal
	token   string
}

// The runs that only mark a place in the queue carry nothing of their
// own, so every session shares one of each (they are never written to:
// only Query, Execute and refused-Parse runs are).
var (
	syncRun        = &run{kind: 'S'}
	describeRun    = &run{kind: 'D'}
	ownDescribeRun = &run{kind: 'd'}
	copyEndRun     = &run{kind: 'c'}
)

type clientWriter struct {
	mu   sync.Mutex
	conn net.Conn
	buf  []byte
}

func (w *clientWriter) appendMsg(m pgproto3.BackendMessage) {
	w.buf, _ = m.Encode(w.buf)
}

func (w *clientWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.conn.Write(w.buf)
	if cap(w.buf) > 4*flushAt {
		w.buf = nil // one huge message must not pin its buffer for the session
	} else {
		w.buf = w.buf[:0]
	}
	return err
}

func newSession(s *Server, cfg *config.Config, p Principal, client net.Conn, cr *wire.Reader, up *upstreamConn) *Session {
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	ss := &Session{
		srv: s, cfg: cfg, id: p.Session, principal: p, client: client, cr: cr, up: up,
		ur:           wire.NewReader(up.conn, wire.DefaultMaxMessageLen),
		refusalToken: "sekisho_refusal_" + hex.EncodeToString(tok),
		started:      s.now(),
		upTx:         up.tx,
		cs:           clientState{stmts: map[string]prepared{}, portals: map[string]prepared{}},
	}
	ss.lastClient.Store(time.Now().UnixNano())
	ss.cw.conn = client
	cr.SetMaxLen(cfg.Limits.MaxMessageBytes)
	if s.inspect != nil {
		ss.inspector = s.inspect(p)
		if rp, ok := ss.inspector.(resultPasser); ok {
			ss.passesResults = rp.PassesResults()
		}
	}
	return ss
}

// Errors that end a session, each with its audit reason.
var (
	errClientTerminate = errors.New("client_terminate")
	errClientClosed    = errors.New("client_closed")
	errUpstreamLost    = errors.New("upstream_lost")
	errProtocol        = errors.New("protocol_violation")
	errKilled          = errors.New("killed")
)

// run finishes the startup the client sees and relays until either side
// ends. Both directions are waited for before it returns.
func (ss *Session) run() {
	defer ss.srv.unregister(ss)
	// The client gets the upstream's parameters and our own cancel key.
	ss.cw.appendMsg(&pgproto3.AuthenticationOk{})
	keys := make([]string, 0, len(ss.up.params))
	for k := range ss.up.params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ss.cw.appendMsg(&pgproto3.ParameterStatus{Name: k, Value: ss.up.params[k]})
	}
	ss.cw.appendMsg(&pgproto3.BackendKeyData{ProcessID: ss.keyPID, SecretKey: ss.keySecret})
	ss.cw.appendMsg(&pgproto3.ReadyForQuery{TxStatus: ss.up.tx})
	if err := ss.cw.flush(); err != nil {
		ss.up.close()
		ss.end(errClientClosed)
		return
	}

	// Plaintext on both sides: the event loop relays (see eventLoop),
	// and this goroutine waits for the end.
	if loopable(ss) {
		if l := ss.srv.eventLoop(); l != nil {
			err := l.relay(ss)
			ss.ended.Store(true)
			ss.end(err)
			return
		}
	}

	ss.srv.goroutineRelays.Add(1)
	defer ss.srv.goroutineRelays.Add(-1)
	g, ctx := errgroup.WithContext(context.Background())
	stop := context.AfterFunc(ctx, func() {
		// The first direction to fail ends the other: closing both sockets
		// unblocks any read or write in progress. After a Terminate the
		// upstream is only interrupted: it may serve another session.
		ss.client.Close()
		if ss.terminating.Load() {
			_ = ss.up.conn.SetReadDeadline(time.Now())
		} else {
			ss.up.conn.Close()
		}
	})
	defer stop()
	g.Go(ss.clientToUpstream)
	g.Go(func() error {
		ss.upExit = ss.upstreamToClient()
		return ss.upExit
	})
	err := g.Wait()
	ss.ended.Store(true)
	ss.end(err)
}

// end cleans up the upstream and records the session's end.
func (ss *Session) end(err error) {
	ss.mu.Lock()
	busy := ss.pending > 0
	killed := ss.killed
	copyIn := ss.copyIn
	ss.mu.Unlock()
	// The upstream goes back for reuse only from a session that ended
	// with a Terminate while nothing was outstanding, outside any
	// transaction, with the upstream's stream stopped between messages.
	reuse := errors.Is(err, errClientTerminate) && errors.Is(ss.upExit, errClientTerminate) &&
		!busy && killed == nil && !copyIn && ss.upTx == 'I' && ss.ur.Clean() && ss.cfg.Limits.UpstreamIdleMax > 0
	if reuse {
		// A Kill or a cancel racing with the end must not reach the
		// connection once another session may have it.
		ss.cancelMu.Lock()
		ss.mu.Lock()
		if ss.killed != nil {
			reuse = false
		} else {
			ss.handedOff = true
		}
		ss.mu.Unlock()
		ss.cancelMu.Unlock()
	}
	reason := "client_closed"
	switch {
	case killed != nil:
		reason = killed.Reason
	case err != nil:
		var r *Refusal
		if errors.As(err, &r) {
			reason = r.Reason
		} else {
			reason = err.Error()
			for _, e := range []error{errClientTerminate, errClientClosed, errUpstreamLost, errProtocol} {
				if errors.Is(err, e) {
					reason = e.Error()
				}
			}
		}
	}
	// A client that left while the upstream was still working must not
	// leave a backend running its query: cancel it, then close.
	if busy && !errors.Is(err, errUpstreamLost) {
		if cerr := ss.up.cancel(); cerr != nil {
			ss.srv.log.Warn("upstream cancel at session end failed", "session", ss.id, "err", cerr)
		}
	}
	if reuse {
		ss.srv.pool.put(ss.up.poolKey, ss.up, ss.up.poolGen, ss.cfg.Limits.UpstreamIdleMax, ss.cfg.Limits.UpstreamTimeout.D(), ss.srv.now)
	} else {
		ss.up.close()
	}
	ss.client.Close()
	_ = ss.srv.record(audit.Event{Type: audit.SessionEnd, Session: ss.id, User: ss.principal.User, Role: ss.principal.Role,
		Source: ss.principal.Source, Database: ss.principal.Database, Reason: reason,
		Duration: ms(ss.srv.now().Sub(ss.started))})
}

// Kill ends the session from outside (shutdown, later suspension): the
// client gets r, a statement in progress is cancelled upstream.
func (ss *Session) Kill(r *Refusal) {
	ss.mu.Lock()
	if ss.killed != nil || ss.handedOff {
		ss.mu.Unlock()
		return
	}
	ss.killed = r
	ss.wasKilled.Store(true)
	client, up, ls := ss.client, ss.up.conn, ss.onLoop
	ss.mu.Unlock()
	// The deadline goes on before the lock: a relay blocked writing to a
	// client that stopped reading holds the lock, and must give it up.
	_ = client.SetWriteDeadline(time.Now().Add(time.Second))
	ss.cw.mu.Lock()
	ss.cw.buf = ss.cw.buf[:0]
	ss.cw.appendMsg(r.ErrorResponse())
	_ = ss.cw.flush()
	ss.cw.mu.Unlock()
	if ls != nil {
		ls.stop() // the loop owns the sockets
		return
	}
	client.Close()
	up.Close()
}

// cancelSoon cancels the upstream's statement without waiting for the
// cancel's own connection: the relay (on the event loop, every session's)
// goes on to end the session meanwhile, and end cancels again, in order,
// before it closes the upstream.
func (ss *Session) cancelSoon() {
	go func() { _ = ss.cancelUpstream() }()
}

func (ss *Session) cancelUpstream() error {
	ss.cancelMu.Lock()
	defer ss.cancelMu.Unlock()
	ss.mu.Lock()
	gone := ss.handedOff
	ss.mu.Unlock()
	if gone {
		return nil // the session is over; its upstream serves someone else
	}
	return ss.up.cancel()
}

// sendFatal tells the client why the session ends (best effort).
func (ss *Session) sendFatal(r *Refusal) {
	r.Fatal = true
	ss.mu.Lock()
	client := ss.client
	ss.mu.Unlock()
	_ = client.SetWriteDeadline(time.Now().Add(time.Second)) // before the lock, as in Kill
	ss.cw.mu.Lock()
	defer ss.cw.mu.Unlock()
	ss.cw.appendMsg(r.ErrorResponse())
	_ = ss.cw.flush()
}

// idleFor reports how long the session has had nothing outstanding and
// heard nothing from its client (0 while the upstream works).
func (ss *Session) idleFor(now time.Time) time.Duration {
	ss.mu.Lock()
	busy := ss.pending > 0
	ss.mu.Unlock()
	if busy {
		return 0
	}
	last := time.Unix(0, max(ss.lastClient.Load(), ss.lastReady.Load()))
	return now.Sub(last)
}

// clientToUpstream reads client messages, lets the inspector decide the
// statements, and forwards them.
func (ss *Session) clientToUpstream() error {
	for {
		fresh := ss.cr.Buffered() == 0 // Next reads from the socket
		typ, body, err := ss.cr.Next()
		if err != nil {
			return ss.clientReadError(err)
		}
		if fresh {
			ss.lastClient.Store(time.Now().UnixNano())
		}
		if err := ss.fromClient(typ, body); err != nil {
			if errors.Is(err, errClientTerminate) && len(ss.uw) > 0 {
				// What the client sent before its Terminate goes on.
				if _, werr := ss.up.conn.Write(ss.uw); werr != nil {
					return errUpstreamLost
				}
			}
			return err
		}
		if ss.cr.Buffered() == 0 || len(ss.uw) >= flushAt {
			if _, err := ss.up.conn.Write(ss.uw); err != nil {
				return errUpstreamLost
			}
			if cap(ss.uw) > 4*flushAt {
				ss.uw = nil
			} else {
				ss.uw = ss.uw[:0]
			}
		}
	}
}

// clientState is what the client→upstream direction keeps between
// messages.
type clientState struct {
	dec     wire.FrontendDecoder
	stmts   map[string]prepared // prepared statement name → what the gateway knows of it
	portals map[string]prepared // portal name → its statement
	// epoch counts sync points (Query, Sync). A transaction's end drops
	// its portals upstream, and the name may then hold something else
	// (a cursor opened by SQL); a portal bound before the last sync point
	// is described before each Execute, as one the gateway never saw.
	epoch int
	// The last statement text and its redaction: clients send the same
	// text again and again (a Parse of the unnamed statement per
	// execution), and it need not be copied, shaped and redacted anew.
	lastText, lastRedacted string
	lastShape              sqlscope.Shape
	// lastShared: lastRedacted is the redaction of every text of
	// lastShape's shape, so a text that differs from the last one only in
	// its numbers (WHERE aid = 42, then 43) need not be shaped and
	// redacted anew either.
	lastShared bool
	// at: when the event loop read what it is relaying now (zero on the
	// goroutine relay, which reads the clock per statement).
	at time.Time
}

// text returns q as a string with its shape and redaction, from the memo
// when q is the last text seen.
func (cs *clientState) text(q []byte) (string, sqlscope.Shape, string) {
	if string(q) != cs.lastText || cs.lastText == "" && len(q) == 0 && !cs.lastShape.Known {
		text := string(q)
		if cs.lastShared && sqlscope.SameShape(text, cs.lastShape) {
			cs.lastText = text
			return cs.lastText, cs.lastShape, cs.lastRedacted
		}
		sh := sqlscope.ShapeOf(text)
		red, shared := sqlscope.RedactShared(text, sh)
		cs.lastText, cs.lastShape, cs.lastRedacted, cs.lastShared = text, sh, red, shared
	}
	return cs.lastText, cs.lastShape, cs.lastRedacted
}

// fromClient decides one client message and appends what goes upstream
// to ss.uw. An error ends the session (the client has been told why,
// where it should be).
func (ss *Session) fromClient(typ byte, body []byte) error {
	cs := &ss.cs
	dec, stmts, portals := &cs.dec, cs.stmts, cs.portals
	if strings.IndexByte("QPBEDCF", typ) >= 0 {
		ss.mu.Lock()
		inCopy := ss.copyIn
		ss.mu.Unlock()
		if inCopy {
			// PostgreSQL would throw the message away with an error;
			// the gateway could no longer match answers to statements.
			return ss.protocolError(fmt.Sprintf("message type %q arrived during COPY FROM STDIN; end the copy (CopyDone or CopyFail) first", typ))
		}
	}
	if typ == 'Q' || typ == 'S' || typ == 'F' {
		cs.epoch++
	}
	switch typ {
	case 'Q':
		q, derr := wire.QueryText(body)
		if derr != nil {
			return ss.protocolError("malformed Query message")
		}
		text, sh, red := cs.text(q)
		r := &run{kind: 'Q', text: red, start: ss.clock(cs.at)}
		st := &Statement{Kind: 'Q', Text: text, Redacted: red, Shape: sh, At: cs.at}
		if ref := ss.decide(st); ref != nil {
			r.refusal, r.token = ref, ss.nextToken()
			ss.uw, _ = (&pgproto3.Query{String: r.token}).Encode(ss.uw)
		} else {
			forget(st.Forgets, stmts, portals)
			ss.uw = wire.AppendFrame(ss.uw, typ, body)
		}
		ss.enqueue(r, true)
	case 'P':
		nameb, q, derr := wire.ParseFields(body)
		if derr != nil {
			return ss.protocolError("malformed Parse message")
		}
		name := string(nameb)
		text, sh, red := cs.text(q)
		var ref *Refusal
		if name != "" && len(stmts) >= maxPreparedStatements && !has(stmts, name) {
			ref = &Refusal{Code: codeProgramLimitExceeded, Reason: "too_many_prepared_statements",
				Message: fmt.Sprintf("too many prepared statements in this session (the gateway keeps at most %d)", maxPreparedStatements),
				Hint:    "Close (DEALLOCATE) prepared statements you no longer need, or reconnect."}
		} else {
			st := &Statement{Kind: 'P', Text: text, Redacted: red, Name: name, Shape: sh, At: cs.at}
			ref = ss.decide(st)
			if ref == nil {
				stmts[name] = prepared{text: red, masked: st.Masked, forgets: st.Forgets}
			} else if _, known := stmts[name]; !known {
				// The stand-in fails, and a statement of that name may
				// still exist upstream (an unnamed one from before, or
				// one made with SQL PREPARE): its rows are described.
				stmts[name] = prepared{text: red, masked: true}
			}
		}
		if ref != nil {
			r := &run{kind: 'R', text: red, start: ss.clock(cs.at), refusal: ref, token: ss.nextToken()}
			ss.uw, _ = (&pgproto3.Parse{Name: name, Query: r.token}).Encode(ss.uw)
			ss.enqueue(r, false)
		} else {
			ss.uw = wire.AppendFrame(ss.uw, typ, body)
		}
	case 'B':
		// Only the names matter here; the message goes on as it came.
		portal, stmt, derr := wire.BindNames(body)
		if derr != nil {
			return ss.protocolError("malformed Bind message")
		}
		if len(portals) >= maxPreparedStatements {
			// Portals die with their transaction upstream, which the
			// gateway does not track; forgetting them only loses the
			// statement text of their audit events.
			clear(portals)
		}
		pr, ok := stmts[string(stmt)]
		if !ok {
			// Not prepared through this protocol: a statement made
			// with SQL PREPARE (they share PostgreSQL's namespace),
			// decided when it was prepared. Its rows are described.
			pr = prepared{text: "(statement prepared with SQL PREPARE)", masked: true}
		}
		pr.epoch = cs.epoch
		portals[string(portal)] = pr
		ss.uw = wire.AppendFrame(ss.uw, typ, body)
	case 'E':
		pname, derr := wire.ExecutePortal(body)
		if derr != nil {
			return ss.protocolError("malformed Execute message")
		}
		pr, ok := portals[string(pname)]
		if !ok {
			pr = prepared{text: "(portal not known to the gateway)", masked: true}
		}
		if pr.epoch != cs.epoch {
			pr.masked = true
		}
		// What this statement drops or redefines is forgotten now,
		// before any later Bind or Execute of those names passes.
		forget(pr.forgets, stmts, portals)
		if pr.masked && ss.inspector != nil {
			// The inspector must see the columns of every row it
			// masks, and the client may not have asked for them (or
			// asked before binding, when formats were not yet known):
			// describe the portal first. Its answer goes to the
			// inspector only.
			ss.uw, _ = (&pgproto3.Describe{ObjectType: 'P', Name: string(pname)}).Encode(ss.uw)
			ss.enqueue(ownDescribeRun, false)
		}
		ss.enqueue(&run{kind: 'E', text: pr.text, start: ss.clock(cs.at), masked: pr.masked}, false)
		ss.uw = wire.AppendFrame(ss.uw, typ, body)
	case 'C':
		m, derr := dec.Decode(typ, body)
		if derr != nil {
			return ss.protocolError("malformed Close message")
		}
		c := m.(*pgproto3.Close)
		if c.ObjectType == 'S' {
			delete(stmts, c.Name)
		} else {
			delete(portals, c.Name)
		}
		ss.uw = wire.AppendFrame(ss.uw, typ, body)
	case 'S':
		ss.mu.Lock()
		inCopy := ss.copyIn
		ss.mu.Unlock()
		if !inCopy {
			ss.enqueue(syncRun, true)
		}
		ss.uw = wire.AppendFrame(ss.uw, typ, body)
	case 'F':
		// FunctionCall (the fast-path interface) names a function by
		// OID with no SQL to analyse: refused, in order, like a
		// refused Query (it is a sync point of its own).
		if _, derr := dec.Decode(typ, body); derr != nil {
			return ss.protocolError("malformed FunctionCall message")
		}
		ref := &Refusal{Code: codeFeatureNotSupported, Reason: "function_call_refused",
			Message: "the FunctionCall (fast-path) protocol message is not allowed through sekisho",
			Hint:    "Call the function with a SELECT statement instead (large objects: use lo_* SQL functions)."}
		r := &run{kind: 'Q', text: "(FunctionCall)", start: ss.clock(cs.at), refusal: ref, token: ss.nextToken()}
		ss.uw, _ = (&pgproto3.Query{String: r.token}).Encode(ss.uw)
		ss.enqueue(r, true)
	case 'c', 'f':
		// The client ends its COPY FROM STDIN: from here Sync counts
		// again. The marker tells a later CopyInResponse which Syncs
		// came before the end of the copy.
		ss.mu.Lock()
		if ss.copyIn {
			ss.copyIn = false
		} else {
			// The CopyInResponse has not arrived yet (the client is
			// ahead): leave a marker for copyInStarted.
			ss.runs = append(ss.runs, copyEndRun)
		}
		ss.mu.Unlock()
		ss.uw = wire.AppendFrame(ss.uw, typ, body)
	case 'D':
		ss.enqueue(describeRun, false)
		ss.uw = wire.AppendFrame(ss.uw, typ, body)
	case 'H', 'd':
		ss.uw = wire.AppendFrame(ss.uw, typ, body)
	case 'X':
		// The Terminate itself does not go on: the upstream
		// connection outlives the session when it can be reused, and
		// end closes it properly when it cannot.
		ss.terminating.Store(true)
		return errClientTerminate
	default:
		return ss.protocolError(fmt.Sprintf("unknown message type %q", typ))
	}
	return nil
}

// prepared is what the gateway keeps of a prepared statement or portal.
type prepared struct {
	text   string // redacted, for the audit log
	masked bool   // its rows need the inspector's filter
	// forgets: running it drops or redefines prepared statements or
	// portals by SQL (see Statement.Forgets).
	forgets sqlscope.Forget
	// epoch is the sync point a portal was bound after (see
	// clientToUpstream).
	epoch int
}

// has reports whether m holds name.
func has(m map[string]prepared, name string) bool {
	_, ok := m[name]
	return ok
}

// forget drops what the gateway knows of the statements and portals f
// names: binding or executing them afterwards is treated as binding
// something the gateway never saw (described, masked).
func forget(f sqlscope.Forget, stmts, portals map[string]prepared) {
	if f.AllStatements {
		clear(stmts)
	}
	for _, n := range f.Statements {
		delete(stmts, n)
	}
	if f.AllPortals {
		clear(portals)
	}
	for _, n := range f.Portals {
		delete(portals, n)
	}
}

func (ss *Session) decide(st *Statement) *Refusal {
	if ss.inspector == nil {
		return nil
	}
	st.Principal = ss.principal
	return ss.inspector.Statement(st)
}

// clock returns at, the time the event loop read the message being
// handled, or the server's clock where there is none (the goroutine
// relay).
func (ss *Session) clock(at time.Time) time.Time {
	if at.IsZero() {
		return ss.srv.now()
	}
	return at
}

func (ss *Session) nextToken() string {
	ss.refusalSeq++
	return ss.refusalToken + "_" + strconv.Itoa(ss.refusalSeq)
}

// enqueue records what the upstream will answer next; syncPoint marks
// messages answered by a ReadyForQuery.
func (ss *Session) enqueue(r *run, syncPoint bool) {
	ss.mu.Lock()
	ss.runs = append(ss.runs, r)
	if syncPoint {
		ss.pending++
	}
	ss.mu.Unlock()
}

func (ss *Session) clientReadError(err error) error {
	switch {
	case errors.Is(err, wire.ErrMessageTooLong):
		return ss.refuseFatal(&Refusal{Code: codeProgramLimitExceeded, Reason: "message_too_long",
			Message: fmt.Sprintf("a client message exceeds the gateway's limit of %d bytes", ss.cfg.Limits.MaxMessageBytes),
			Hint:    "Send smaller statements or COPY in smaller pieces; the limit is limits.max_message_bytes."})
	case errors.Is(err, wire.ErrMalformed):
		return ss.protocolError("invalid message framing")
	}
	if ss.killedRefusal() != nil {
		return errKilled
	}
	return errClientClosed
}

func (ss *Session) killedRefusal() *Refusal {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.killed
}

func (ss *Session) protocolError(what string) error {
	return ss.refuseFatal(protocolRefusal(what))
}

func (ss *Session) refuseFatal(r *Refusal) error {
	ss.sendFatal(r)
	return r
}

// upstreamToClient relays the upstream's answers, applying the inspector's
// row filters, substituting refusals, and recording each statement.
func (ss *Session) upstreamToClient() error {
	for {
		typ, body, err := ss.ur.Next()
		if err != nil {
			return ss.upstreamReadError(err)
		}
		if err := ss.fromUpstream(typ, body); err != nil {
			return err
		}
		if ss.ur.Buffered() == 0 || len(ss.cw.buf) >= flushAt {
			ss.cw.mu.Lock()
			err := ss.cw.flush()
			ss.cw.mu.Unlock()
			if err != nil {
				return errClientClosed
			}
		}
	}
}

// upstreamReadError says why reading the upstream failed, and tells the
// client where that is news to it.
func (ss *Session) upstreamReadError(err error) error {
	if ss.terminating.Load() && ss.killedRefusal() == nil {
		return errClientTerminate
	}
	if ss.killedRefusal() != nil || ss.ended.Load() {
		return errKilled
	}
	if errors.Is(err, net.ErrClosed) {
		return errClientClosed
	}
	if errors.Is(err, wire.ErrMessageTooLong) {
		// Cancel first: the upstream is still producing it.
		ss.cancelSoon()
		return ss.refuseFatal(&Refusal{Code: codeProgramLimitExceeded, Reason: "upstream_message_too_long",
			Message: fmt.Sprintf("a message from the database server is larger than the gateway's limit of %d bytes", wire.DefaultMaxMessageLen),
			Hint:    "Select fewer or smaller columns per row (for example substring() of large values)."})
	}
	ss.sendFatal(&Refusal{Code: codeConnectionFailure, Reason: "upstream_lost",
		Message: fmt.Sprintf("sekisho lost the connection to the database server for %q", ss.principal.Database),
		Hint:    "Reconnect; the open transaction, if any, was rolled back."})
	return errUpstreamLost
}

// upstreamState is what the upstream→client direction keeps between
// messages.
type upstreamState struct {
	dec       wire.BackendDecoder
	filter    RowFilter
	described bool      // a RowDescription (or Result(nil)) covers the rows now arriving
	cur       *run      // the statement whose rows are arriving
	at        time.Time // as clientState.at, for the upstream's answers
}

// fromUpstream relays one upstream message to ss.cw, applying the
// inspector's row filter, substituting refusals, and recording
// statements as they finish.
func (ss *Session) fromUpstream(typ byte, body []byte) error {
	us := &ss.us
	dec := &us.dec
	if us.cur == nil {
		us.cur = ss.head()
	}
	forward := true
	switch typ {
	case 'D':
		if us.cur != nil {
			us.cur.rows++
		}
		if ss.inspector != nil && !us.described {
			// Rows without a RowDescription in this response pass as
			// the inspector decided at the statement; a masked one
			// always has the gateway's own Describe before it.
			if us.cur == nil || us.cur.masked {
				ss.cancelSoon()
				return ss.refuseFatal(&Refusal{Code: codeInsufficientPrivilege, Reason: "undescribed_rows",
					Message: "sekisho stopped rows whose columns it had not seen described",
					Hint:    "Reconnect and run the statement again."})
			}
			us.described = true
		}
		if us.filter != nil {
			m, derr := dec.Decode(typ, body)
			if derr != nil {
				return errUpstreamLost
			}
			row := m.(*pgproto3.DataRow)
			if ref := us.filter(row.Values); ref != nil {
				return ss.refuseFatal(ref)
			}
			ss.cw.mu.Lock()
			ss.cw.appendMsg(row)
			ss.cw.mu.Unlock()
			forward = false
		}
	case 'G':
		ss.copyInStarted()
	case 'S':
		// Kept current so a session that reuses this connection is
		// told the server's settings as they are.
		var ps pgproto3.ParameterStatus
		if ps.Decode(body) == nil {
			ss.up.params[ps.Name] = ps.Value
		}
	case 'T', 'n':
		own := false
		if d := ss.popDescribe(); d != nil && d.kind == 'd' {
			own, forward = true, false // the answer to the gateway's Describe
		}
		if typ == 'n' {
			if own {
				us.filter, us.described = nil, true
			}
			break
		}
		us.filter, us.described = nil, true
		if ss.inspector != nil && !ss.passesResults {
			m, derr := dec.Decode(typ, body)
			if derr != nil {
				return errUpstreamLost
			}
			var ref *Refusal
			us.filter, ref = ss.inspector.Result(m.(*pgproto3.RowDescription))
			if ref != nil {
				ss.cancelSoon()
				return ss.refuseFatal(ref)
			}
		}
	case 'C':
		us.filter, us.described = nil, false
		if us.cur != nil {
			us.cur.tagRows += tagRows(body)
			if us.cur.kind == 'E' {
				ss.finish(us.cur, audit.OutcomeOK)
				us.cur = nil
			}
		}
	case 's', 'I':
		us.filter, us.described = nil, false
		if us.cur != nil && us.cur.kind == 'E' {
			ss.finish(us.cur, audit.OutcomeOK)
			us.cur = nil
		}
	case 'E':
		us.filter, us.described = nil, false
		m, derr := dec.Decode(typ, body)
		if derr != nil {
			return errUpstreamLost
		}
		e := m.(*pgproto3.ErrorResponse)
		ss.mu.Lock()
		ss.copyIn = false // an error ends COPY FROM STDIN upstream
		ss.mu.Unlock()
		if r := ss.refusalFor(e); r != nil {
			// The stand-in statement failed as planned: the client
			// sees the refusal, in the place of the refused statement.
			ss.cw.mu.Lock()
			ss.cw.appendMsg(r.refusal.ErrorResponse())
			ss.cw.mu.Unlock()
			forward = false
			r.err = r.refusal.Code
			if r.kind == 'R' {
				ss.finish(r, audit.OutcomeRefused)
			} // a refused Query is recorded at its ReadyForQuery
		} else {
			if us.cur != nil {
				us.cur.err = e.Code
				if us.cur.kind == 'E' {
					ss.finish(us.cur, audit.OutcomeError)
				}
			}
			if ss.inspector != nil && ss.inspector.Message(e) {
				ss.cw.mu.Lock()
				ss.cw.appendMsg(e)
				ss.cw.mu.Unlock()
				forward = false
			}
		}
		us.cur = nil
		if e.Severity == "FATAL" || e.Severity == "PANIC" {
			ss.cw.mu.Lock()
			ss.cw.appendFrame(typ, body)
			_ = ss.cw.flush()
			ss.cw.mu.Unlock()
			return errUpstreamLost
		}
	case 'N':
		if ss.inspector != nil && !ss.passesResults {
			m, derr := dec.Decode(typ, body)
			if derr != nil {
				return errUpstreamLost
			}
			n := m.(*pgproto3.NoticeResponse)
			if ss.inspector.Message((*pgproto3.ErrorResponse)(n)) {
				ss.cw.mu.Lock()
				ss.cw.appendMsg(n)
				ss.cw.mu.Unlock()
				forward = false
			}
		}
	case 'Z':
		us.filter, us.described = nil, false
		if len(body) == 1 {
			ss.upTx = body[0]
		}
		ss.readyForQuery()
		us.cur = nil
	}
	if forward {
		ss.cw.mu.Lock()
		ss.cw.appendFrame(typ, body)
		ss.cw.mu.Unlock()
	}
	return nil
}

func (w *clientWriter) appendFrame(typ byte, body []byte) {
	w.buf = wire.AppendFrame(w.buf, typ, body)
}

// copyInStarted handles a CopyInResponse: PostgreSQL now ignores Sync and
// Flush until the client ends the copy, so Syncs the client already sent
// after the COPY statement (libpq pipelines one after Execute) and before
// its CopyDone will get no ReadyForQuery and are taken off the books.
func (ss *Session) copyInStarted() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	kept := ss.runs[:0]
	started, ended := false, false
	for _, r := range ss.runs {
		switch {
		case !started && (r.kind == 'Q' || r.kind == 'E'):
			started = true // the COPY statement itself
		case started && !ended && r.kind == 'c':
			ended = true
			continue // the marker's job is done
		case started && !ended && r.kind == 'S':
			ss.pending--
			continue
		}
		kept = append(kept, r)
	}
	ss.runs = kept
	ss.copyIn = !ended
}

// popDescribe takes the Describe that a RowDescription or NoData answers
// off the queue, if the next answer due is a Describe's.
func (ss *Session) popDescribe() *run {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for i, r := range ss.runs {
		switch r.kind {
		case 'D', 'd':
			ss.runs = append(ss.runs[:i], ss.runs[i+1:]...)
			return r
		case 'R', 'c':
			continue
		}
		return nil
	}
	return nil
}

// head returns the oldest statement the upstream has not finished.
func (ss *Session) head() *run {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, r := range ss.runs {
		if r.kind == 'Q' || r.kind == 'E' {
			return r
		}
		if r.kind == 'S' {
			return nil
		}
	}
	return nil
}

// refusalFor finds the refused statement whose stand-in caused e, among
// the statements before the next sync point.
func (ss *Session) refusalFor(e *pgproto3.ErrorResponse) *run {
	if e.Code != "42601" {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, r := range ss.runs {
		if r.refusal != nil && strings.Contains(e.Message, `"`+r.token+`"`) {
			return r
		}
		if r.kind == 'S' || r.kind == 'Q' && r.refusal == nil {
			break
		}
	}
	return nil
}

// finish records a statement and takes it off the queue.
func (ss *Session) finish(r *run, outcome string) {
	ss.mu.Lock()
	for i, x := range ss.runs {
		if x == r {
			ss.runs = append(ss.runs[:i], ss.runs[i+1:]...)
			break
		}
	}
	ss.mu.Unlock()
	ss.recordRun(r, outcome)
}

func (ss *Session) recordRun(r *run, outcome string) {
	rows := r.rows
	if rows == 0 {
		rows = r.tagRows
	}
	proto := "simple"
	if r.kind != 'Q' {
		proto = "extended"
	}
	reason := ""
	if r.refusal != nil {
		reason = r.refusal.Reason // which rule refused it (column_denied, masked_expression, ...)
	}
	end := ss.clock(ss.us.at)
	err := ss.srv.record(audit.Event{Time: end, Type: audit.Statement, Session: ss.id, User: ss.principal.User, Role: ss.principal.Role,
		Source: ss.principal.Source, Database: ss.principal.Database, Statement: r.text, Protocol: proto,
		Rows: rows, Duration: ms(end.Sub(r.start)), Outcome: outcome, SQLState: r.err, Reason: reason})
	if err != nil {
		// Fail closed: a session whose statements cannot be recorded ends
		// rather than go on unaudited.
		ref := auditRefusal(ss.cfg)
		ref.Fatal = true
		ss.Kill(ref)
	}
}

// streaming reports whether the session is in the middle of a stream
// after a read from the client (fromClient) or the upstream: a COPY FROM
// STDIN under way, or part of an answer relayed with more to come.
func (ss *Session) streaming(fromClient bool) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.copyIn || !fromClient && ss.pending > 0
}

// answered returns how many sync units the upstream has answered.
func (ss *Session) answered() uint64 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.readies
}

// readyForQuery ends a sync unit: the simple query (or Sync) at the head
// completes, and extended statements skipped after an error are dropped.
func (ss *Session) readyForQuery() {
	ss.mu.Lock()
	var done *run
	var skippedRefusals []*run
	i := 0
	for ; i < len(ss.runs); i++ {
		r := ss.runs[i]
		if r.kind == 'R' {
			skippedRefusals = append(skippedRefusals, r)
		}
		if r.kind == 'Q' {
			done = r
			i++
			break
		}
		if r.kind == 'S' {
			i++
			break
		}
		// An Execute or refused Parse still queued here was skipped by
		// the server after an earlier error in the same pipeline.
	}
	ss.runs = ss.runs[i:]
	ss.readies++
	if ss.pending > 0 {
		ss.pending--
	}
	if ss.pending == 0 {
		t := ss.us.at
		if t.IsZero() {
			t = time.Now()
		}
		ss.lastReady.Store(t.UnixNano())
	}
	ss.mu.Unlock()
	// A refusal decided but not reached (an earlier error aborted the
	// pipeline) is still a decision the audit trail keeps.
	for _, r := range skippedRefusals {
		r.err = r.refusal.Code
		ss.recordRun(r, audit.OutcomeRefused)
	}
	if done != nil {
		outcome := audit.OutcomeOK
		switch {
		case done.refusal != nil:
			outcome, done.err = audit.OutcomeRefused, done.refusal.Code
		case done.err != "":
			outcome = audit.OutcomeError
		}
		ss.recordRun(done, outcome)
	}
}

// tagRows reads the row count at the end of a CommandComplete tag
// ("SELECT 5", "INSERT 0 5", "COPY 5").
func tagRows(body []byte) int64 {
	tag := bytes.TrimRight(body, "\x00")
	i := bytes.LastIndexByte(tag, ' ')
	if i < 0 {
		return 0
	}
	var n int64
	for _, c := range tag[i+1:] {
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return 0 // not a count (or absurdly large): as ParseInt's error
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
