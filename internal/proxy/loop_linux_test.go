//go:build linux

package proxy

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/sekisho/sekisho/internal/config"
)

// The loop busy-polls only while the active sessions have left it a
// processor for loopCalmWindows windows in a row and none streams, and
// never when limits.busy_poll is 0s.
func TestBusyPollGate(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	poll := config.Duration(300 * time.Microsecond)
	off := config.Duration(0)
	const calm = loopCalmWindows - 1 // calm enough, with one more quiet window
	tests := []struct {
		name                   string
		busyPoll               *config.Duration
		active, goroutine      int
		procs                  int
		streamed, streamedLast bool
		calm                   int // windows in a row with few active sessions before this one
		want                   time.Duration
		wantCalm               int
	}{
		{"idle", nil, 0, 0, 4, false, false, calm, config.DefaultBusyPoll, loopCalmWindows},
		{"a lone session", &poll, 1, 0, 4, false, false, calm, 300 * time.Microsecond, loopCalmWindows},
		{"procs less one", &poll, 3, 0, 4, false, false, calm, 300 * time.Microsecond, loopCalmWindows},
		{"as many sessions as procs", &poll, 4, 0, 4, false, false, calm, 0, 0},
		{"goroutine-relayed sessions count", &poll, 1, 3, 4, false, false, calm, 0, 0},
		{"goroutine-relayed sessions leave one", &poll, 1, 2, 4, false, false, calm, 300 * time.Microsecond, loopCalmWindows},
		{"one processor", &poll, 0, 0, 1, false, false, calm, 0, loopCalmWindows},
		{"busy_poll 0s", &off, 1, 0, 4, false, false, calm, 0, loopCalmWindows},
		{"a session streamed", &poll, 1, 0, 4, true, false, calm, 0, loopCalmWindows},
		{"a quiet window after a stream", &poll, 0, 0, 4, false, true, calm, 0, loopCalmWindows},
		{"turns again after a stream", &poll, 1, 0, 4, false, true, calm, 300 * time.Microsecond, loopCalmWindows},
		{"not calm for long enough", &poll, 1, 0, 4, false, false, calm - 1, 0, calm},
		{"the first window after a busy one", &poll, 1, 0, 2, false, false, 0, 0, 1},
		{"a busy window ends the calm", &poll, 2, 0, 2, false, false, loopCalmWindows, 0, 0},
	}
	for _, tt := range tests {
		runtime.GOMAXPROCS(tt.procs)
		cfg := &config.Config{}
		cfg.Limits.BusyPoll = tt.busyPoll
		srv := &Server{}
		srv.cfg.Store(cfg)
		srv.goroutineRelays.Store(int64(tt.goroutine))
		l := &eventLoop{srv: srv, active: tt.active, streamed: tt.streamed, streamedLast: tt.streamedLast, calm: tt.calm}
		l.roll(time.Now())
		if l.spin != tt.want || l.calm != tt.wantCalm {
			t.Errorf("%s: spin %s after %d calm windows, want %s after %d", tt.name, l.spin, l.calm, tt.want, tt.wantCalm)
		}
		if l.active != 0 || l.streamed || l.window != 1 {
			t.Errorf("%s: the window was not reset (active %d, streamed %v, window %d)", tt.name, l.active, l.streamed, l.window)
		}
	}
}

// A lone session on the loop is relayed with busy polling on, except
// while it streams; a session relayed by goroutines is counted while it
// runs.
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
	spin := func() time.Duration {
		got := make(chan time.Duration, 1)
		l.post(func() { got <- l.spin })
		return <-got
	}
	waitSpin := func(when string) {
		t.Helper()
		var got time.Duration
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			exec(t, conn, "SELECT 1") // keeps the session active across windows
			if got = spin(); got == want {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("busy poll %s %s, want %s", got, when, want)
	}
	waitSpin("with a lone session")

	// A result far bigger than the socket buffers (about 63 MB; loopback
	// buffers hold a few MB), read slowly: the loop must not poll while
	// it streams. Checked in the first half only, while the rest cannot
	// all be in buffers already.
	const total = 300000
	rr := conn.ExecParams(t.Context(), fmt.Sprintf("SELECT g, repeat('x', 200) FROM generate_series(1, %d) g", total), nil, nil, nil, nil)
	rows := 0
	for rr.NextRow() {
		if rows++; rows%30000 == 1000 && rows < total/2 {
			time.Sleep(3 * time.Millisecond) // several windows with the client not reading
			if got := spin(); got != 0 {
				t.Fatalf("busy poll %s after %d rows of a stream, want none", got, rows)
			}
		}
	}
	if _, err := rr.Close(); err != nil {
		t.Fatal(err)
	}
	if rows != total {
		t.Fatalf("%d rows, want %d", rows, total)
	}
	waitSpin("once the stream is over")
}

// A long answer is read in large pieces once it has streamed
// coalesceAfter bytes, every byte of it still reaches the client, its
// tail is not held back for good, and the upstream socket wakes its
// reader for every byte again afterwards: at the end of the answer, and
// when the connection serves the next session.
func TestCoalesceLongAnswer(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	pid := backendPID(t, conn)
	onLoop := g.cfg.Limits.Relay != config.RelayGoroutines
	type upstreamState struct {
		coalesced, starts int
		lowats            []int
	}
	state := func() upstreamState {
		l := g.srv.eventLoop()
		got := make(chan upstreamState, 1)
		l.post(func() {
			s := upstreamState{coalesced: len(l.coalesced), starts: l.coalesceStarts}
			for _, c := range l.conns {
				if c != nil && !c.client {
					v, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT)
					if err != nil {
						v = -1
					}
					s.lowats = append(s.lowats, v)
				}
			}
			got <- s
		})
		return <-got
	}
	// Rows of about 1 kB: answers that end just past the point where
	// coalescing starts (a tail shorter than coalesceBytes), and one
	// far longer than the socket buffers.
	const width = 1000
	for _, total := range []int{coalesceAfter/width + 20, coalesceAfter/width + 70, 20 * coalesceAfter / width} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		rr := conn.ExecParams(ctx, fmt.Sprintf("SELECT g, repeat(chr(65 + g %% 26), %d) FROM generate_series(1, %d) g", width, total), nil, nil, nil, nil)
		rows := 0
		for rr.NextRow() {
			if rows++; total > 2*coalesceAfter/width && rows%2000 == 0 {
				// The longest answer is read slowly: the client's side
				// fills up while the upstream socket is coalescing.
				time.Sleep(time.Millisecond)
			}
			v := rr.Values()
			if string(v[0]) != strconv.Itoa(rows) || len(v[1]) != width || v[1][0] != byte(65+rows%26) {
				cancel()
				t.Fatalf("row %d of %d came as %q, %d bytes starting %q", rows, total, v[0], len(v[1]), v[1][:1])
			}
		}
		_, err := rr.Close()
		cancel()
		if err != nil {
			t.Fatalf("%d rows of %d bytes: %v", total, width, err)
		}
		if rows != total {
			t.Fatalf("%d rows, want %d", rows, total)
		}
		if !onLoop {
			continue
		}
		s := state()
		if s.coalesced != 0 || !slices.Equal(s.lowats, []int{1}) {
			t.Fatalf("after an answer of %d rows: %d sockets coalescing, SO_RCVLOWAT %v on the upstream sockets; want none and [1]", total, s.coalesced, s.lowats)
		}
	}
	if onLoop {
		s := state()
		if s.starts < 3 {
			t.Fatalf("coalescing started %d times in three answers longer than %d bytes", s.starts, coalesceAfter)
		}
		// An answer shorter than coalesceAfter is not held, whatever came
		// before it.
		const short = coalesceAfter / width / 2
		if res := exec(t, conn, fmt.Sprintf("SELECT repeat('x', %d) FROM generate_series(1, %d)", width, short)); len(res[0].Rows) != short {
			t.Fatalf("%d rows, want %d", len(res[0].Rows), short)
		}
		if after := state(); after.starts != s.starts {
			t.Fatalf("coalescing started on an answer of %d bytes", short*width)
		}
	}

	// The connection is reset and kept for the next session: a socket
	// still waiting for 64 kB would time the reset out.
	if err := conn.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the upstream connection to be kept", func() bool { return g.srv.pool.count() == 1 })
	next := g.connect(t)
	if got := backendPID(t, next); got != pid {
		t.Fatalf("the next session has backend %s, want the reused %s", got, pid)
	}
}

// A client that pipelines short statements keeps answers coming without
// a pause, but no one answer is long: the socket is never coalesced.
func TestCoalesceNotForPipelinedShortAnswers(t *testing.T) {
	g := startGW(t)
	conn := g.connect(t)
	starts := func() int {
		l := g.srv.eventLoop()
		got := make(chan int, 1)
		l.post(func() { got <- l.coalesceStarts })
		return <-got
	}
	before := 0
	if g.cfg.Limits.Relay != config.RelayGoroutines {
		before = starts()
	}
	// 60 batches of 200 rows of 1 kB, each sent while the four before
	// it are still to be read: about 12 MB of answers, 200 kB per
	// Sync, with a batch nearly always outstanding.
	const width, per, batches, ahead = 1000, 200, 60, 4
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p := conn.StartPipeline(ctx)
	send := func() {
		for range per {
			p.SendQueryParams(fmt.Sprintf("SELECT repeat('y', %d)", width), nil, nil, nil, nil)
		}
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(batch int) {
		for i := range per {
			res, err := p.GetResults()
			if err != nil {
				t.Fatalf("batch %d, result %d: %v", batch, i, err)
			}
			rr, ok := res.(*pgconn.ResultReader)
			if !ok {
				t.Fatalf("batch %d, result %d: %T", batch, i, res)
			}
			if r := rr.Read(); r.Err != nil || len(r.Rows) != 1 || len(r.Rows[0][0]) != width {
				t.Fatalf("batch %d, result %d: %v, %d rows", batch, i, r.Err, len(r.Rows))
			}
		}
		if res, err := p.GetResults(); err != nil {
			t.Fatal(err)
		} else if _, ok := res.(*pgconn.PipelineSync); !ok {
			t.Fatalf("batch %d: want PipelineSync, got %T", batch, res)
		}
	}
	for range ahead {
		send()
	}
	for b := ahead; b < batches; b++ {
		send()
		read(b - ahead)
	}
	for b := batches - ahead; b < batches; b++ {
		read(b)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if g.cfg.Limits.Relay != config.RelayGoroutines {
		if after := starts(); after != before {
			t.Fatalf("coalescing started %d times for answers of %d bytes each", after-before, per*width)
		}
	}
}
