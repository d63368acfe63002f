package netio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// pair returns a wrapped client connection and the server's end of it.
func pair(t *testing.T, network, addr string) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := Listener{ln}.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	if _, ok := s.(*Conn); !ok {
		t.Fatalf("Listener accepted a %T, want *Conn", s)
	}
	return Wrap(c), s
}

func TestRoundTripAndBackpressure(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"tcp", "tcp", "127.0.0.1:0"},
		{"unix", "unix", filepath.Join(t.TempDir(), "s")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t, tc.network, tc.addr)
			// Far more than the socket buffers hold: the writer must wait
			// for the poller (EAGAIN) many times while the reader is slow.
			want := make([]byte, 16<<20)
			_, _ = rand.Read(want)
			werr := make(chan error, 1)
			go func() {
				n, err := c.Write(want)
				if err == nil && n != len(want) {
					err = errors.New("short write without an error")
				}
				werr <- err
				c.Close()
			}()
			// Not for synchronisation: a head start fills the send buffer,
			// so the first waits happen even on a fast machine.
			time.Sleep(50 * time.Millisecond)
			got, err := io.ReadAll(s)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := <-werr; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, not the %d written", len(got), len(want))
			}
			// io.ReadAll stopped at io.EOF; another read says it again.
			if n, err := s.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Fatalf("read after EOF: %d, %v", n, err)
			}
		})
	}
}

func TestDeadlineAndClose(t *testing.T) {
	c, s := pair(t, "tcp", "127.0.0.1:0")
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := s.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	_ = s.SetReadDeadline(time.Time{})

	// A read blocked in the poller ends when another goroutine closes.
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // either order ends in net.ErrClosed
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed connection: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Read")
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed connection: %v, want net.ErrClosed", err)
	}
	_ = c
}

func TestWriteToResetPeer(t *testing.T) {
	c, s := pair(t, "tcp", "127.0.0.1:0")
	// SO_LINGER 0: the peer's close sends a reset, not a FIN.
	_ = s.(*Conn).Unwrap().(*net.TCPConn).SetLinger(0)
	s.Close()
	time.Sleep(20 * time.Millisecond)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write(make([]byte, 1024))
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write to a reset peer: %v, want a *net.OpError from write", err)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write to a reset peer: %v, want ECONNRESET or EPIPE", err)
	}
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a net.Pipe connection")
	}
	c, _ := pair(t, "tcp", "127.0.0.1:0")
	if Wrap(c) != c {
		t.Fatal("Wrap wrapped a *Conn twice")
	}
	if _, ok := c.(syscall.Conn); !ok {
		t.Fatal("*Conn does not give its raw connection")
	}
}
