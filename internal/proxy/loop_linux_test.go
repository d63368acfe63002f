//go:build linux

package proxy

import (
	"runtime"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/config"
)

// The loop busy-polls only while the active sessions leave it a
// processor, and never when limits.busy_poll is 0s.
func TestBusyPollGate(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	poll := config.Duration(300 * time.Microsecond)
	off := config.Duration(0)
	tests := []struct {
		name              string
		busyPoll          *config.Duration
		active, goroutine int
		procs             int
		want              time.Duration
	}{
		{"idle", nil, 0, 0, 4, config.DefaultBusyPoll},
		{"a lone session", &poll, 1, 0, 4, 300 * time.Microsecond},
		{"procs less one", &poll, 3, 0, 4, 300 * time.Microsecond},
		{"as many sessions as procs", &poll, 4, 0, 4, 0},
		{"goroutine-relayed sessions count", &poll, 1, 3, 4, 0},
		{"goroutine-relayed sessions leave one", &poll, 1, 2, 4, 300 * time.Microsecond},
		{"one processor", &poll, 0, 0, 1, 0},
		{"busy_poll 0s", &off, 1, 0, 4, 0},
	}
	for _, tt := range tests {
		runtime.GOMAXPROCS(tt.procs)
		cfg := &config.Config{}
		cfg.Limits.BusyPoll = tt.busyPoll
		srv := &Server{}
		srv.cfg.Store(cfg)
		srv.goroutineRelays.Store(int64(tt.goroutine))
		l := &eventLoop{srv: srv, active: tt.active}
		l.roll(time.Now())
		if l.spin != tt.want {
			t.Errorf("%s: spin %s, want %s", tt.name, l.spin, tt.want)
		}
		if l.active != 0 || l.window != 1 {
			t.Errorf("%s: the window was not reset (active %d, window %d)", tt.name, l.active, l.window)
		}
	}
}

// A lone session on the loop is relayed with busy polling on; a session
// relayed by goroutines is counted while it runs.
func TestBusyPollLoneSession(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	exec(t, conn, "SELECT 1")
	if g.cfg.Limits.Relay == config.RelayGoroutines {
		if n := g.srv.goroutineRelays.Load(); n != 1 {
			t.Fatalf("%d sessions counted as relayed by goroutines, want 1", n)
		}
		return
	}
	if n := g.srv.goroutineRelays.Load(); n != 0 {
		t.Fatalf("%d sessions counted as relayed by goroutines, want 0 (the session is on the loop)", n)
	}
	want := config.DefaultBusyPoll
	if runtime.GOMAXPROCS(0) < 2 {
		want = 0 // no processor to spare
	}
	l := g.srv.eventLoop()
	var spin time.Duration
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		exec(t, conn, "SELECT 1") // keeps the session active across windows
		got := make(chan time.Duration, 1)
		l.post(func() { got <- l.spin })
		if spin = <-got; spin == want {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("busy poll %s with a lone session, want %s", spin, want)
}
