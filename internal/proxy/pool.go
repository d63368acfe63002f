package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/wire"
)

// upstreamPool keeps upstream connections of sessions that ended cleanly,
// reset with DISCARD ALL, for the next session of the same gateway user
// and role with the same upstream and the same startup parameters. A
// PostgreSQL backend costs milliseconds to start and authenticate; taking
// an idle one costs a system call. Users never see the gateway's
// credential either way, and the reset leaves nothing of the previous
// session behind that another user could reach: DISCARD ALL drops
// temporary tables, prepared statements, cursors, LISTENs, advisory locks
// and every setting, including SET ROLE and SET SESSION AUTHORIZATION;
// what it does not drop stays with the user (see poolKey).
type upstreamPool struct {
	mu     sync.Mutex
	idle   map[string][]*pooledConn
	gen    uint64 // bumped when the configuration changes: older connections are closed
	closed bool
	wg     sync.WaitGroup // resets in progress
}

type pooledConn struct {
	up    *upstreamConn
	since time.Time
	gen   uint64
}

// poolKey names the connections a session may take: the same gateway
// user and role, the same server, account and TLS settings (the gateway's
// side) and the same startup parameters (the client's side: RESET ALL
// returns to them). The user and role are part of the key because some
// backend state outlives DISCARD ALL: dblink's named connections (opened
// with the first session's authority and usable by name with no
// password), libraries brought in with LOAD, and whatever an extension
// keeps in the backend's memory. Such state can then reach only the user
// who left it, and only under the role it was left under (single sign-on
// may give an account another role at its next login).
func poolKey(user, role string, u config.Upstream, params map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s\x00%s\x00%s\x00%d\x00%s\x00%s\x00%s\x00%s\x00%s", user, role, u.Database, u.Host, u.Port, u.DBName, u.User, u.TLS, u.CAFile, u.PasswordFile+"\x00"+u.PasswordEnv)
	for _, k := range slices.Sorted(maps.Keys(params)) {
		b.WriteString("\x00" + k + "=" + params[k])
	}
	return b.String()
}

// get returns an idle connection for key that is still alive, or nil.
func (p *upstreamPool) get(key string, maxAge time.Duration, now time.Time) *upstreamConn {
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		// The most recently returned connection: the warmest backend, and
		// the oldest ones are left to time out when demand falls.
		pc := list[len(list)-1]
		p.idle[key] = list[:len(list)-1]
		stale := pc.gen != p.gen || now.Sub(pc.since) > maxAge
		p.mu.Unlock()
		if stale || !alive(pc.up.conn) {
			pc.up.close()
			continue
		}
		return pc.up
	}
}

// alive reports whether an idle connection has nothing to say: a server
// that ended it (restart, idle_session_timeout, pg_terminate_backend) has
// sent an error or closed, and either shows as readable. It peeks without
// waiting, so a live connection costs one system call.
func alive(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn() // any TLS record on an idle connection is news too
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	readable := true
	cerr := rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		readable = n > 0 || n == 0 && err == nil || err != nil && !errors.Is(err, syscall.EAGAIN)
	})
	return cerr == nil && !readable
}

// put resets up in the background and keeps it for key, unless the pool
// is closed or the configuration has changed since gen. The pool keeps at
// most maxIdle connections in all: the oldest idle one makes room.
func (p *upstreamPool) put(key string, up *upstreamConn, gen uint64, maxIdle int, timeout time.Duration, now func() time.Time) {
	p.mu.Lock()
	if p.closed || gen != p.gen || maxIdle <= 0 {
		p.mu.Unlock()
		up.close()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		if err := up.reset(timeout); err != nil {
			up.close()
			return
		}
		p.mu.Lock()
		if p.closed || gen != p.gen {
			p.mu.Unlock()
			up.close()
			return
		}
		if p.idle == nil {
			p.idle = map[string][]*pooledConn{}
		}
		var evicted *pooledConn
		if p.countLocked() >= maxIdle {
			evicted = p.takeOldestLocked()
		}
		p.idle[key] = append(p.idle[key], &pooledConn{up: up, since: now(), gen: gen})
		p.mu.Unlock()
		if evicted != nil {
			evicted.up.close()
		}
	}()
}

// generation is the number put needs to keep a connection.
func (p *upstreamPool) generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// flush closes every idle connection and makes connections of sessions
// still running under the old configuration close when they end.
func (p *upstreamPool) flush() {
	p.mu.Lock()
	p.gen++
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.up.close()
		}
	}
}

// expire closes connections idle longer than maxAge.
func (p *upstreamPool) expire(maxAge time.Duration, now time.Time) {
	var old []*pooledConn
	p.mu.Lock()
	for k, list := range p.idle {
		kept := list[:0]
		for _, pc := range list {
			if now.Sub(pc.since) > maxAge {
				old = append(old, pc)
			} else {
				kept = append(kept, pc)
			}
		}
		if len(kept) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = kept
		}
	}
	p.mu.Unlock()
	for _, pc := range old {
		pc.up.close()
	}
}

// close empties the pool for good (shutdown) after resets in progress.
func (p *upstreamPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	p.flush()
}

// count is the number of idle connections (for tests and the admin view).
func (p *upstreamPool) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.countLocked()
}

func (p *upstreamPool) countLocked() int {
	n := 0
	for _, list := range p.idle {
		n += len(list)
	}
	return n
}

// takeOldestLocked removes the connection idle longest (each list is in
// the order connections came back, oldest first).
func (p *upstreamPool) takeOldestLocked() *pooledConn {
	var oldKey string
	var old *pooledConn
	for k, list := range p.idle {
		if len(list) > 0 && (old == nil || list[0].since.Before(old.since)) {
			oldKey, old = k, list[0]
		}
	}
	if old == nil {
		return nil
	}
	if rest := p.idle[oldKey][1:]; len(rest) > 0 {
		p.idle[oldKey] = rest
	} else {
		delete(p.idle, oldKey)
	}
	return old
}

// reset runs DISCARD ALL and reads its answer; anything but a clean,
// idle ReadyForQuery means the connection is not reused.
func (u *upstreamConn) reset(timeout time.Duration) error {
	if err := u.conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	q, _ := (&pgproto3.Query{String: "DISCARD ALL"}).Encode(nil)
	if _, err := u.conn.Write(q); err != nil {
		return err
	}
	r := wire.NewReader(u.conn, 1<<20)
	ok := false
	for {
		typ, body, err := r.Next()
		if err != nil {
			return err
		}
		switch typ {
		case 'C':
			ok = strings.TrimRight(string(body), "\x00") == "DISCARD ALL"
		case 'S':
			var ps pgproto3.ParameterStatus
			if err := ps.Decode(body); err != nil {
				return err
			}
			u.params[ps.Name] = ps.Value
		case 'N', 'A':
			// A notice, or a notification that was queued before UNLISTEN.
		case 'Z':
			if !ok || len(body) != 1 || body[0] != 'I' || r.Buffered() != 0 {
				return errors.New("upstream reset: unexpected state")
			}
			u.tx = 'I'
			return u.conn.SetDeadline(time.Time{})
		default:
			return fmt.Errorf("upstream reset: unexpected message %q", typ)
		}
	}
}
