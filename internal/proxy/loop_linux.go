//go:build linux

package proxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/netio"
	"github.com/sekisho/sekisho/internal/wire"
)

// eventLoop relays plaintext sessions (no TLS on either side) on one
// goroutine with its own epoll set, as pgbouncer does on one thread: one
// wake-up serves every socket that became ready, a socket is read only
// when it has something, and no goroutine is scheduled per message. The messages go
// through the same fromClient and fromUpstream as in the goroutine relay;
// only the reading, writing and waiting differ.
//
// Sessions with TLS on either side keep a goroutine per direction:
// crypto/tls needs a blocking connection.
//
// The loop uses raw system calls (see internal/netio) and waits without
// releasing its processor only while several sockets at a time are ready,
// or for limits.busy_poll while it has a processor to spare (see roll);
// otherwise it waits in an ordinary system call, so the runtime can give
// the processor to other goroutines. It is not locked to a thread, and
// yields every few milliseconds (see run).
//
// What runs on the loop holds up every session on it: a decision that
// must load or check the catalog (queries to the database, at most every
// policy.catalog_check), the parse of a statement not in the decision
// cache (tens of microseconds), and a last message to a client that does
// not read (at most a second). Cancels go on their own goroutines.
type eventLoop struct {
	srv      *Server
	epfd     int
	wake     int // an eventfd: post writes it, the loop reads it
	stopping bool
	stopped  chan struct{}

	mu     sync.Mutex
	posted []func()
	dead   bool // stopped: post does nothing

	conns []*loopConn // by descriptor; loop thread only

	// Busy polling (loop thread only): the sessions with events in the
	// current window are counted; spin is how long to poll before
	// sleeping, set by roll and cleared as soon as more than spinMax
	// sessions are active or one streams. streamed: a session streamed
	// in this window; streamedLast: in the last window with events.
	// calm: windows in a row with at most spinMax sessions active.
	window       uint64
	windowStart  time.Time
	active       int
	calm         int
	spinMax      int
	spin         time.Duration
	streamed     bool
	streamedLast bool

	// coalesced: the upstream sockets read in large pieces (see pace);
	// coalesceStarts counts how often one started to be (for tests).
	coalesced      []*loopConn
	coalesceStarts int

	// now is when the loop last woke up (loop thread only): what a
	// wake-up relays is stamped with it — a statement's start and end,
	// a client's last activity — instead of reading the clock for each
	// message (four or five reads per transaction were a tenth of the
	// gateway's user time on a virtual machine).
	now time.Time
}

// loopSession is a session while the loop relays it.
type loopSession struct {
	loop     *eventLoop
	ss       *Session
	client   loopConn
	upstream loopConn
	done     chan error
	ended    bool
	// uBlocked / cBlocked: the bytes for the upstream (client) could not
	// all be written; reading the other side waits until they are.
	uBlocked, cBlocked bool
	seen               uint64 // the last window with events for this session
}

// loopConn is one side of a loop session: a socket the loop owns.
type loopConn struct {
	ls     *loopSession
	fd     int
	in     []byte // read and not yet relayed: in[off:]
	off    int
	maxLen int
	events uint32 // what epoll is asked for
	client bool
	// Upstream side only (see pace): bytes read in the answer now
	// streaming (since ReadyForQuery number readies), whether the
	// socket wakes the loop only for coalesceBytes, and when it was
	// last read.
	streamBytes int
	readies     uint64
	coalescing  bool
	lastRead    time.Time
}

const loopReadSize = 32 << 10

func newEventLoop(srv *Server) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	l := &eventLoop{srv: srv, epfd: epfd, wake: wake, stopped: make(chan struct{})}
	go l.run()
	return l, nil
}

// close stops the loop once the sessions on it have been finished.
func (l *eventLoop) close() {
	l.post(func() {
		for _, c := range l.conns {
			if c == nil {
				continue
			}
			l.finish(c.ls, errKilled, false)
		}
		l.stopping = true
	})
	<-l.stopped
}

// post runs f on the loop thread.
// Nothing runs once the loop has stopped (a late Kill of a session
// that already ended): the eventfd's number may belong to another file
// by then, so it is written under mu, which the loop holds to stop.
func (l *eventLoop) post(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return
	}
	l.posted = append(l.posted, f)
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(l.wake, one[:])
}

// loopable reports whether ss can be relayed by the loop: plaintext
// sockets on both sides, nothing but the gateway's own reader on them.
func loopable(ss *Session) bool {
	if ss.cfg.Limits.Relay != config.RelayAuto {
		return false
	}
	_, c := ss.client.(*netio.Conn)
	_, u := ss.up.conn.(*netio.Conn)
	return c && u
}

// relay moves ss onto the loop and returns, when the session is over,
// why it ended; ss.client, ss.up.conn and ss.upExit are set as the
// goroutine relay leaves them.
func (l *eventLoop) relay(ss *Session) error {
	cfd, err := detach(ss.client)
	if err != nil {
		ss.srv.log.Error("event loop: taking the client socket failed", "session", ss.id, "err", err)
		ss.sendFatal(loopRefusal())
		return err
	}
	ufd, err := detach(ss.up.conn)
	if err != nil {
		ss.srv.log.Error("event loop: taking the upstream socket failed", "session", ss.id, "err", err)
		b, _ := loopRefusal().ErrorResponse().Encode(nil)
		_ = writeAllWithin(cfd, b, time.Second)
		unix.Close(cfd)
		return err
	}
	ls := &loopSession{loop: l, ss: ss, done: make(chan error, 1)}
	maxLen := ss.cfg.Limits.MaxMessageBytes
	if maxLen <= 0 {
		maxLen = wire.DefaultMaxMessageLen // as wire.NewReader
	}
	ls.client = loopConn{ls: ls, fd: cfd, in: ss.cr.Take(), maxLen: maxLen, client: true}
	ls.upstream = loopConn{ls: ls, fd: ufd, in: ss.ur.Take(), maxLen: wire.DefaultMaxMessageLen}
	ss.cw.mu.Lock()
	ss.cw.conn = fdConn{fd: cfd}
	ss.cw.mu.Unlock()
	ss.mu.Lock()
	killed := ss.killed
	if killed == nil {
		ss.onLoop = ls
	}
	ss.mu.Unlock()
	if killed != nil {
		ls.restore()
		return errKilled
	}
	l.post(func() { l.start(ls) })
	return <-ls.done
}

// detach takes c's socket out of the runtime's poller: the loop gets a
// duplicate, and c is closed (the socket stays open through the
// duplicate).
func detach(c net.Conn) (int, error) {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if cerr := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return -1, cerr
	}
	if derr != nil {
		return -1, os.NewSyscallError("dup", derr)
	}
	c.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("fcntl", err)
	}
	return fd, nil
}

// attach gives a socket back to the runtime's poller as a net.Conn.
func attach(fd int, name string) net.Conn {
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return closedConn{}
	}
	return netio.Wrap(c)
}

func (l *eventLoop) start(ls *loopSession) {
	for _, c := range []*loopConn{&ls.client, &ls.upstream} {
		c.events = unix.EPOLLIN | unix.EPOLLRDHUP
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: c.events, Fd: int32(c.fd)}); err != nil {
			l.fail(ls, os.NewSyscallError("epoll_ctl", err))
			return
		}
		for c.fd >= len(l.conns) {
			l.conns = append(l.conns, nil)
		}
		l.conns[c.fd] = c
	}
	// Bytes that came with the startup (a pipelined first query).
	if len(ls.client.in) > 0 {
		l.relayIn(&ls.client)
	}
	if !ls.ended && len(ls.upstream.in) > 0 {
		l.relayIn(&ls.upstream)
	}
}

// loopYieldEvery is how often the loop yields its processor (see run).
const loopYieldEvery = 5 * time.Millisecond

// loopSpinWindow is how often the loop decides whether to busy-poll.
const loopSpinWindow = time.Millisecond

// loopCalmWindows is how many windows in a row must have had few enough
// active sessions before the loop polls again.
const loopCalmWindows = 10

// roll ends the current busy-poll window. A session's answer is relayed
// sooner when the loop is polling than when it must be woken, by about
// the time a sleeping thread takes to wake (tens of microseconds on a
// virtual machine); but polling holds a processor, which is taken from
// the clients, the database and the other goroutines when they need
// it. So the loop polls (up to limits.busy_poll before each sleep) only
//   - while the sessions active in each of the last loopCalmWindows
//     windows and those relayed by goroutines (counted while they are
//     open: the loop cannot see whether they are busy) leave it a
//     processor: at most GOMAXPROCS - 1. One window is not enough: with
//     more sessions than that taking turns (8 pgbench clients on two
//     processors), a window now and then has one, and polling after it
//     cost those sessions 4-10% of their transactions;
//   - and while its sessions take turns with their databases, statement
//     and answer: none streamed (see streaming) in the last window that
//     had events. A stream keeps the database and the client busy at
//     once, and the loop would poll on the processor they need.
func (l *eventLoop) roll(now time.Time) {
	if l.active > 0 {
		l.streamedLast = l.streamed
	}
	l.spinMax = runtime.GOMAXPROCS(0) - 1 - int(l.srv.goroutineRelays.Load())
	l.spin = 0
	if l.active > l.spinMax {
		l.calm = 0
	} else if l.calm < loopCalmWindows {
		l.calm++
	}
	if l.spinMax >= 1 && l.calm >= loopCalmWindows && !l.streamedLast {
		l.spin = l.srv.cfg.Load().Limits.BusyPollD()
	}
	l.window++
	l.windowStart = now
	l.active = 0
	l.streamed = false
}

// streaming notes that a session is in the middle of a stream: a write
// to one side could not finish, part of an answer has been relayed and
// the rest is to come, or a COPY FROM STDIN is under way. No busy
// polling until a window with events has none.
func (l *eventLoop) streaming() {
	l.streamed = true
	l.spin = 0
}

// busyPoll polls without sleeping until a socket is ready or l.spin
// has passed.
func (l *eventLoop) busyPoll(events []unix.EpollEvent, now time.Time) (int, syscall.Errno) {
	deadline := now.Add(l.spin)
	for {
		n, errno := epollWaitRaw(l.epfd, events)
		if n != 0 || errno != 0 || !time.Now().Before(deadline) {
			return n, errno
		}
	}
}

func (l *eventLoop) run() {
	events := make([]unix.EpollEvent, 128)
	busy := false
	l.now = time.Now()
	lastYield := l.now
	for {
		// The runtime takes a goroutine that has run for 10 ms without
		// being scheduled for a runaway: a signal to preempt it, its
		// processor taken from it in the middle of a wait, and the
		// runtime's monitor thread waking every 20 µs for a while after.
		// System calls do not count as being scheduled, so the loop,
		// which otherwise never gives way, yields now and then. The
		// time is the last wake-up's: late by what that wake-up relayed,
		// microseconds.
		now := l.now
		if now.Sub(lastYield) > loopYieldEvery {
			runtime.Gosched()
			lastYield = now
		}
		if now.Sub(l.windowStart) >= loopSpinWindow {
			l.roll(now)
		}
		// While several sockets at a time are ready, poll without giving
		// up the processor; otherwise (and when that poll finds nothing)
		// wait in an ordinary system call. A lone session would otherwise
		// pay two calls per wake-up, the poll finding nothing each time.
		n, errno := 0, syscall.Errno(0)
		if busy {
			n, errno = epollWaitRaw(l.epfd, events)
		}
		if errno == 0 && n == 0 && l.spin > 0 {
			n, errno = l.busyPoll(events, now)
		}
		if errno == 0 && n == 0 {
			var err error
			timeout := -1
			if len(l.coalesced) > 0 {
				timeout = int(coalesceWait / time.Millisecond)
			}
			n, err = unix.EpollWait(l.epfd, events, timeout)
			if err != nil {
				n = 0
			}
		}
		l.now = time.Now()
		busy = n > 1
		for i := 0; i < n; i++ {
			ev := events[i]
			if int(ev.Fd) == l.wake {
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
				l.mu.Lock()
				posted := l.posted
				l.posted = nil
				l.mu.Unlock()
				for _, f := range posted {
					f()
				}
				if l.stopping {
					l.mu.Lock()
					l.dead = true
					unix.Close(l.epfd)
					unix.Close(l.wake)
					l.mu.Unlock()
					close(l.stopped)
					return
				}
				continue
			}
			var c *loopConn
			if int(ev.Fd) < len(l.conns) {
				c = l.conns[ev.Fd]
			}
			if c == nil || c.ls.ended {
				continue
			}
			if c.ls.seen != l.window {
				c.ls.seen = l.window
				if l.active++; l.active > l.spinMax {
					l.spin, l.calm = 0, 0
				}
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				l.writable(c)
				l.streaming()
			}
			if !c.ls.ended && ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				l.readable(c, ev.Events)
				streaming := !c.ls.ended && c.ls.ss.streaming(c.client)
				if streaming {
					l.streaming()
				}
				if !c.client && !c.ls.ended {
					l.pace(c, streaming)
				}
			}
		}
		if len(l.coalesced) > 0 {
			l.sweep(l.now)
		}
	}
}

// Coalescing: a long answer (a bulk SELECT, COPY TO STDOUT) comes from
// PostgreSQL in sends of 8 kB, and the loop, woken for each, would spend
// most of its time being woken. Once an answer has streamed
// coalesceAfter bytes, the upstream socket wakes the loop only when
// coalesceBytes have come (SO_RCVLOWAT), or, for the tail of the answer,
// when the loop has not read it for coalesceWait. Answers shorter than
// coalesceAfter, the ones a person waits for, are never held back; an
// answer is what one Query or Sync gets, so a client that pipelines many
// short statements is not held back either.
const (
	coalesceAfter = 4 << 20
	coalesceBytes = 64 << 10
	coalesceWait  = time.Millisecond
)

// readSize is how much room c's buffer must have for a read.
func (c *loopConn) readSize() int {
	if c.coalescing {
		return 2 * coalesceBytes
	}
	return loopReadSize
}

// pace starts or ends coalescing on an upstream socket after a read:
// streaming says whether the answer goes on.
func (l *eventLoop) pace(c *loopConn, streaming bool) {
	if !streaming {
		c.streamBytes = 0
		if c.coalescing {
			l.coalesced = slices.DeleteFunc(l.coalesced, func(o *loopConn) bool { return o == c })
			l.uncoalesce(c)
		}
		if cap(c.in) > loopReadSize && c.off == len(c.in) {
			c.in, c.off = nil, 0 // the larger buffer is for the stream only
		}
		return
	}
	if r := c.ls.ss.answered(); r != c.readies {
		// A pipelining client keeps answers coming without a pause;
		// what counts is the length of one sync unit's answer.
		c.readies, c.streamBytes = r, 0
		if c.coalescing {
			l.coalesced = slices.DeleteFunc(l.coalesced, func(o *loopConn) bool { return o == c })
			l.uncoalesce(c)
			return
		}
	}
	if c.coalescing {
		c.lastRead = l.now
		return
	}
	if c.streamBytes < coalesceAfter {
		return
	}
	if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, coalesceBytes); err != nil {
		return // reading in small pieces is slower, not wrong
	}
	c.coalescing = true
	c.lastRead = l.now
	l.coalesced = append(l.coalesced, c)
	l.coalesceStarts++
}

// uncoalesce makes c's socket wake the loop for every byte again. Were
// that refused, a short answer could wait on the socket for good: the
// session ends instead.
func (l *eventLoop) uncoalesce(c *loopConn) {
	c.coalescing = false
	if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1); err != nil {
		l.fail(c.ls, os.NewSyscallError("setsockopt SO_RCVLOWAT", err))
	}
}

// sweep ends coalescing on the sockets not read for coalesceWait: the
// rest of their answer is shorter than coalesceBytes, or comes slowly.
func (l *eventLoop) sweep(now time.Time) {
	var done []*loopConn
	l.coalesced = slices.DeleteFunc(l.coalesced, func(c *loopConn) bool {
		switch {
		case c.ls.ended || !c.coalescing:
			return true
		case now.Sub(c.lastRead) >= coalesceWait:
			done = append(done, c)
			return true
		}
		return false
	})
	for _, c := range done {
		l.uncoalesce(c)
	}
}

func epollWaitRaw(epfd int, events []unix.EpollEvent) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	return int(r), e
}

// readable reads what c has and relays the whole messages in it.
func (l *eventLoop) readable(c *loopConn, events uint32) {
	ls := c.ls
	if c.client && ls.uBlocked || !c.client && ls.cBlocked {
		// Not asked for (the other side must take what it has first),
		// but epoll reports a hang-up or an error anyway: that side is
		// gone, and reading on would only pile its bytes up here.
		if events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			if c.client {
				l.finish(ls, ls.ss.clientReadError(io.EOF), false)
			} else {
				l.finish(ls, ls.ss.upstreamReadError(io.EOF), false)
			}
		}
		return
	}
	if size := c.readSize(); cap(c.in)-len(c.in) < size/2 {
		c.compact(size)
	}
	n, errno := rawRead(c.fd, c.in[len(c.in):cap(c.in)])
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return
	case errno != 0 || n == 0:
		var err error = io.EOF
		if errno != 0 {
			err = errno
		}
		if c.client {
			l.finish(ls, ls.ss.clientReadError(err), false)
		} else {
			l.finish(ls, ls.ss.upstreamReadError(err), false)
		}
		return
	}
	c.in = c.in[:len(c.in)+n]
	if c.client {
		ls.ss.lastClient.Store(l.now.UnixNano())
	} else {
		c.streamBytes += n
	}
	l.relayIn(c)
}

// relayIn relays the whole messages in c.in and writes the result to the
// other side.
func (l *eventLoop) relayIn(c *loopConn) {
	ls := c.ls
	ss := ls.ss
	if c.client {
		ss.cs.at = l.now
	} else {
		ss.us.at = l.now
	}
	for {
		typ, body, n, err := wire.Frame(c.in[c.off:], c.maxLen)
		if err != nil {
			if c.client {
				l.finish(ls, ss.clientReadError(err), false)
			} else {
				l.finish(ls, ss.upstreamReadError(err), false)
			}
			return
		}
		if n == 0 {
			break
		}
		c.off += n
		if c.client {
			err = ss.fromClient(typ, body)
		} else {
			err = ss.fromUpstream(typ, body)
		}
		if err == nil && ss.wasKilled.Load() {
			err = errKilled // a failed audit write (recordRun) killed it
		}
		if err != nil {
			if c.client && errors.Is(err, errClientTerminate) {
				l.terminate(ls)
				return
			}
			l.finish(ls, err, false)
			return
		}
	}
	if c.off == len(c.in) {
		// Everything relayed: the next read starts at the front, and a
		// buffer grown for one big message is let go.
		c.in, c.off = c.in[:0], 0
		if cap(c.in) > 4*loopReadSize {
			c.in = nil
		}
	}
	if c.client {
		l.flushUpstream(ls)
	} else {
		l.flushClient(ls)
	}
}

// compact moves the unrelayed bytes to the front and makes room for at
// least min more, or for the whole of a message already announced.
func (c *loopConn) compact(min int) {
	rest := c.in[c.off:]
	need := len(rest) + min
	if len(rest) >= 5 {
		if l := int(int32(binary.BigEndian.Uint32(rest[1:]))); l > 0 && 1+l > len(rest) {
			need = max(need, 1+l)
		}
	}
	if cap(c.in) < need || cap(c.in) > 4*loopReadSize && need <= loopReadSize {
		b := make([]byte, len(rest), max(need, loopReadSize))
		copy(b, rest)
		c.in = b
	} else {
		c.in = c.in[:copy(c.in, rest)]
	}
	c.off = 0
}

func (l *eventLoop) flushUpstream(ls *loopSession) {
	ss := ls.ss
	if len(ss.uw) == 0 {
		return
	}
	w, errno := rawWrite(ls.upstream.fd, ss.uw)
	if errno != 0 && errno != syscall.EAGAIN {
		l.finish(ls, errUpstreamLost, false)
		return
	}
	ss.uw = ss.uw[:copy(ss.uw, ss.uw[w:])]
	if cap(ss.uw) > 4*flushAt && len(ss.uw) == 0 {
		ss.uw = nil
	}
	if blocked := len(ss.uw) > 0; blocked != ls.uBlocked {
		ls.uBlocked = blocked
		l.interest(ls)
	}
}

func (l *eventLoop) flushClient(ls *loopSession) {
	ss := ls.ss
	ss.cw.mu.Lock()
	buf := ss.cw.buf
	w, errno := 0, syscall.Errno(0)
	if len(buf) > 0 {
		w, errno = rawWrite(ls.client.fd, buf)
		ss.cw.buf = buf[:copy(buf, buf[w:])]
		if cap(ss.cw.buf) > 4*flushAt && len(ss.cw.buf) == 0 {
			ss.cw.buf = nil
		}
	}
	blocked := len(ss.cw.buf) > 0
	ss.cw.mu.Unlock()
	if errno != 0 && errno != syscall.EAGAIN {
		l.finish(ls, errClientClosed, false)
		return
	}
	if blocked != ls.cBlocked {
		ls.cBlocked = blocked
		l.interest(ls)
	}
}

// interest tells epoll what the loop waits for on each side of ls: a side
// whose output is blocked is watched for room, and the other side is not
// read until there is (so a slow reader holds back its writer, and the
// gateway's memory per session stays bounded).
func (l *eventLoop) interest(ls *loopSession) {
	for _, c := range []*loopConn{&ls.client, &ls.upstream} {
		in, out := !ls.uBlocked, ls.cBlocked
		if !c.client {
			in, out = !ls.cBlocked, ls.uBlocked
		}
		var ev uint32
		if in {
			ev |= unix.EPOLLIN | unix.EPOLLRDHUP
		}
		if out {
			ev |= unix.EPOLLOUT
		}
		if ev == c.events {
			continue
		}
		c.events = ev
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: ev, Fd: int32(c.fd)}); err != nil {
			l.fail(ls, os.NewSyscallError("epoll_ctl", err))
			return
		}
	}
}

// writable writes what waited for c, then relays what the other side
// sent meanwhile.
func (l *eventLoop) writable(c *loopConn) {
	ls := c.ls
	if c.client {
		l.flushClient(ls)
		if !ls.ended && !ls.cBlocked && len(ls.upstream.in) > ls.upstream.off {
			l.relayIn(&ls.upstream)
			if !ls.ended {
				// The answer may have ended in what was waiting.
				l.pace(&ls.upstream, ls.ss.streaming(false))
			}
		}
	} else {
		l.flushUpstream(ls)
		if !ls.ended && !ls.uBlocked && len(ls.client.in) > ls.client.off {
			l.relayIn(&ls.client)
		}
	}
}

// terminate ends a session whose client said goodbye: what it sent
// before goes upstream, which may then serve another session.
func (l *eventLoop) terminate(ls *loopSession) {
	ss := ls.ss
	clean := true
	if len(ss.uw) > 0 {
		if err := writeAll(ls.upstream.fd, ss.uw); err != nil {
			clean = false
		}
		ss.uw = ss.uw[:0]
	}
	// Upstream bytes not yet relayed: the connection is not between
	// messages and cannot be reused.
	clean = clean && len(ls.upstream.in) == ls.upstream.off
	l.finish(ls, errClientTerminate, clean)
}

// fail ends ls after the system refused the loop something (epoll_ctl):
// the client is told, and the server log says what failed.
func (l *eventLoop) fail(ls *loopSession, err error) {
	ls.ss.srv.log.Error("event loop failed a session", "session", ls.ss.id, "err", err)
	ls.ss.sendFatal(loopRefusal())
	l.finish(ls, err, false)
}

// loopRefusal is what a client hears when the gateway itself could not
// go on relaying its session.
func loopRefusal() *Refusal {
	return &Refusal{Code: codeConnectionFailure, Reason: "relay_failed", Fatal: true,
		Message: "sekisho could not go on relaying this session (a system call failed in the gateway)",
		Hint:    "Reconnect; if it happens again, the gateway's log says which call failed."}
}

// finish takes ls off the loop and hands the session back to its
// goroutine (Session.run), which ends it as the goroutine relay would.
func (l *eventLoop) finish(ls *loopSession, err error, upstreamClean bool) {
	if ls.ended {
		return
	}
	ls.ended = true
	if ls.upstream.coalescing {
		// The socket may serve another session: it must wake its
		// reader for every byte again, or not serve one.
		ls.upstream.coalescing = false
		if unix.SetsockoptInt(ls.upstream.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1) != nil {
			upstreamClean = false
		}
	}
	for _, c := range []*loopConn{&ls.client, &ls.upstream} {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
		l.conns[c.fd] = nil
	}
	ss := ls.ss
	if upstreamClean {
		ss.upExit = errClientTerminate
	} else {
		ss.upExit = err
	}
	ls.restore()
	ls.done <- err
}

// restore gives the sockets back to the session as net.Conns.
func (ls *loopSession) restore() {
	ss := ls.ss
	// Nothing may write to the descriptors once they are handed back
	// (their numbers may be reused at once): Kill and sendFatal write
	// through ss.cw.conn, under ss.cw.mu.
	ss.cw.mu.Lock()
	ss.cw.conn = closedConn{}
	ss.cw.mu.Unlock()
	client := attach(ls.client.fd, "client")
	up := attach(ls.upstream.fd, "upstream")
	ss.mu.Lock()
	ss.onLoop = nil
	ss.client = client
	ss.up.conn = up
	ss.mu.Unlock()
	// Back on goroutines (to end, or to relay a Terminate's leftovers):
	// those read the clock themselves.
	ss.cs.at, ss.us.at = time.Time{}, time.Time{}
	ss.cw.mu.Lock()
	ss.cw.conn = client
	ss.cw.mu.Unlock()
}

func rawRead(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, syscall.EAGAIN
	}
	return netio.Recv(uintptr(fd), b)
}

func rawWrite(fd int, b []byte) (int, syscall.Errno) {
	w := 0
	for w < len(b) {
		r, e := netio.Send(uintptr(fd), b[w:])
		switch e {
		case 0:
			w += r
		case syscall.EINTR:
		default:
			return w, e
		}
	}
	return w, 0
}

func writeAll(fd int, b []byte) error { return writeAllWithin(fd, b, 5*time.Second) }

// writeAllWithin writes b, waiting for room at most d in all.
func writeAllWithin(fd int, b []byte, d time.Duration) error {
	deadline := time.Now().Add(d)
	for len(b) > 0 {
		w, errno := rawWrite(fd, b)
		b = b[w:]
		switch {
		case errno == syscall.EAGAIN:
			left := time.Until(deadline)
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, int(left.Milliseconds())+1)
		case errno != 0:
			return errno
		}
	}
	return nil
}

// fdConn lets Kill and sendFatal write a last message to a client on the
// loop (under ss.cw.mu, through ss.cw.conn), waiting up to a second.
type fdConn struct {
	closedConn
	fd int
}

func (c fdConn) Write(b []byte) (int, error) {
	if err := writeAllWithin(c.fd, b, time.Second); err != nil {
		return 0, err
	}
	return len(b), nil
}

// closedConn stands in for a socket that could not be given back.
type closedConn struct{ net.Conn }

func (closedConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (closedConn) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (closedConn) Close() error                     { return nil }
func (closedConn) SetDeadline(time.Time) error      { return nil }
func (closedConn) SetReadDeadline(time.Time) error  { return nil }
func (closedConn) SetWriteDeadline(time.Time) error { return nil }
func (closedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (closedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// stop ends ls from another goroutine (Session.Kill).
func (ls *loopSession) stop() {
	ls.loop.post(func() { ls.loop.finish(ls, errKilled, false) })
}
