// Package netio gives the relay sockets whose reads and writes cost what
// the kernel charges and no more.
//
// A net.TCPConn reads and writes through the runtime's blocking-system-call
// path: the goroutine's processor is marked as in a system call, and the
// runtime's monitor thread hands the processor to another thread when the
// call lasts a few tens of microseconds. On a loopback write that wakes the
// receiver, the kernel often switches to the receiver before the call
// returns, so under load nearly every write looks long: the processor
// changes threads, threads are woken and put back to sleep, and the
// gateway spent more CPU on that bookkeeping than on relaying (bench/:
// 8–12 µs of its 40–48 µs per pgbench transaction).
//
// The sockets are non-blocking, so a read or write never waits in the
// kernel: Conn issues them as raw system calls and leaves waiting for
// readiness to the runtime's network poller, as before. Deadlines, Close
// from another goroutine and the errors callers test for (net.ErrClosed,
// os.ErrDeadlineExceeded, io.EOF) behave as with the wrapped connection.
package netio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a TCP or Unix-domain connection with raw-system-call Read and
// Write. Every other method is the wrapped connection's.
type Conn struct {
	net.Conn
	raw syscall.RawConn
}

// Wrap returns c as a *Conn when it is a *net.TCPConn or *net.UnixConn,
// and c itself otherwise.
func Wrap(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{Conn: c, raw: rc}
}

// SyscallConn returns the wrapped connection's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// Unwrap returns the wrapped connection.
func (c *Conn) Unwrap() net.Conn { return c.Conn }

// Read implements net.Conn.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			r, e := Recv(fd, b)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for the poller, then try again
			}
			n, errno = r, e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write implements net.Conn: it writes all of b unless an error (or the
// write deadline) stops it.
func (c *Conn) Write(b []byte) (int, error) {
	w := 0
	var errno syscall.Errno
	err := c.raw.Write(func(fd uintptr) bool {
		for w < len(b) {
			r, e := Send(fd, b[w:])
			switch e {
			case 0:
				w += r
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // the send buffer is full: wait for the poller
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return w, err
	case errno != 0:
		return w, c.opError("write", errno)
	}
	return w, nil
}

func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(),
		Err: os.NewSyscallError(op, errno)}
}

// Listener wraps the connections a TCP or Unix listener accepts.
type Listener struct {
	net.Listener
}

// Accept implements net.Listener.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// Recv is one recv(2) on the socket fd into b (not empty), without the
// runtime's system-call bookkeeping: the socket is non-blocking, so the
// call cannot block. recv rather than read(2): the kernel's read path
// goes through the file layer first, a measurable share of a short
// message's cost.
func Recv(fd uintptr, b []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// Send is one send(2) of b (not empty) on the non-blocking socket fd, as
// Recv; MSG_NOSIGNAL spares the SIGPIPE of a peer that has gone.
func Send(fd uintptr, b []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), sendFlags, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}
