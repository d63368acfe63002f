// Package audit defines the events sekisho records and the sinks that
// record them. This is the first version: one JSON line per event. The
// tamper-evident, hash-chained log builds on these event types.
//
// Events never carry secrets: no passwords, no bind parameter values, and
// statement text only with its literal values replaced by placeholders.
package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Type names an event.
type Type string

// Event types.
const (
	// ConnectionAccepted: a client authenticated, was admitted and is
	// connected to its upstream.
	ConnectionAccepted Type = "connection.accepted"
	// ConnectionRefused: a connection attempt was refused; Reason says why.
	ConnectionRefused Type = "connection.refused"
	// SessionEnd: an admitted session ended; Reason says how.
	SessionEnd Type = "session.end"
	// Statement: a statement finished (or was refused).
	Statement Type = "statement"
	// Cancel: a CancelRequest arrived; Outcome says whether it matched.
	Cancel Type = "cancel"
	// AccountChange: an account was created or changed by an administrator.
	AccountChange Type = "account.change"
	// AccountExpiring: an account expires soon; its sponsor should act (an
	// alert).
	AccountExpiring Type = "account.expiring"
	// BreakGlass: an emergency account logged in (an alert to review).
	BreakGlass Type = "break_glass.used"
	// GatewayLock: the gateway was locked or unlocked.
	GatewayLock Type = "gateway.lock"
	// AccountLocked: too many failed logins locked a name (an alert).
	AccountLocked Type = "account.locked"
	// Login: a login at the login API (password + second factor); Outcome
	// ok or refused, Reason says why.
	Login Type = "login"
	// CredentialIssued: an access credential was issued after a login.
	CredentialIssued Type = "credential.issued"
	// CredentialsRevoked: a user's access credentials were revoked.
	CredentialsRevoked Type = "credential.revoked"
	// MFAEnrolled: a second factor was enrolled (or replaced).
	MFAEnrolled Type = "mfa.enrolled"
	// DeviceEvent: a managed device was enrolled, approved or revoked.
	DeviceEvent Type = "device"
)

// Outcomes.
const (
	OutcomeOK      = "ok"
	OutcomeError   = "error"
	OutcomeRefused = "refused"
)

// Event is one audit record.
type Event struct {
	Time     time.Time `json:"time"`
	Type     Type      `json:"type"`
	Session  uint64    `json:"session,omitempty"`
	User     string    `json:"user,omitempty"`
	Role     string    `json:"role,omitempty"`
	Source   string    `json:"source,omitempty"`
	Database string    `json:"database,omitempty"`
	// Reason is a short machine-readable cause (tls_required, bad_password,
	// account_expired, upstream_unavailable, client_closed, ...).
	Reason string `json:"reason,omitempty"`
	// Statement is the statement text with literal values replaced by $n.
	Statement string `json:"statement,omitempty"`
	// Protocol is simple or extended.
	Protocol string  `json:"protocol,omitempty"`
	Rows     int64   `json:"rows,omitempty"`
	Duration float64 `json:"duration_ms,omitempty"`
	Outcome  string  `json:"outcome,omitempty"`
	SQLState string  `json:"sqlstate,omitempty"`
	// Actor is who made an account change.
	Actor string `json:"actor,omitempty"`
	// Method is how a login or connection authenticated ("password",
	// "access_credential", "password+totp").
	Method string `json:"method,omitempty"`
}

// Sink records events. A sink that cannot record returns an error and the
// gateway refuses what it was about to allow: nothing unaudited passes.
type Sink interface {
	Record(e Event) error
}

// File appends one JSON line per event. Record encodes the event into a
// pending buffer and returns; a writer goroutine writes whatever is pending
// in one write, so concurrent sessions share a system call. The pending
// buffer is bounded: when the file cannot keep up, or a write failed, Record
// fails and the gateway refuses what it was about to allow.
//
// The tamper-evident log (hash chain, signed checkpoints, strict
// audited-before-answered mode) builds on this.
type File struct {
	mu      sync.Mutex
	pending []byte
	spare   []byte
	err     error // sticky: the first write error
	closed  bool
	kick    chan struct{}
	done    chan struct{}
	flushed *sync.Cond
	window  atomic.Int64 // time.Duration: see SetFlushEvery
	seq     uint64       // bytes accepted
	times   timeCache
	written uint64 // bytes written

	w io.Writer
	c io.Closer
}

// DefaultFlushEvery is the longest an event waits in memory before its
// write starts (while events keep arriving), unless SetFlushEvery says
// otherwise.
const DefaultFlushEvery = 10 * time.Millisecond

// maxPending bounds the memory audit events may hold while the disk is slow.
const maxPending = 16 << 20

// OpenFile opens (creating, mode 0600) the JSON-lines file at path, or
// standard output for "-".
func OpenFile(path string) (*File, error) {
	if path == "-" {
		return NewWriter(os.Stdout), nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	a := NewWriter(f)
	a.c = f
	return a, nil
}

// NewWriter records to w.
func NewWriter(w io.Writer) *File {
	f := &File{w: w, kick: make(chan struct{}, 1), done: make(chan struct{})}
	f.window.Store(int64(DefaultFlushEvery))
	f.flushed = sync.NewCond(&f.mu)
	go f.writer()
	return f
}

// Record implements Sink.
func (f *File) Record(e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	f.mu.Lock()
	switch {
	case f.err != nil:
		f.mu.Unlock()
		return f.err
	case f.closed:
		f.mu.Unlock()
		return errors.New("audit log closed")
	case len(f.pending) > maxPending:
		f.mu.Unlock()
		return errors.New("audit log cannot keep up: too many events waiting to be written")
	}
	n := len(f.pending)
	f.pending = append(e.appendJSON(f.pending, &f.times), '\n')
	f.seq += uint64(len(f.pending) - n)
	// Sent under the lock, so Close cannot close the channel meanwhile.
	select {
	case f.kick <- struct{}{}:
	default:
	}
	f.mu.Unlock()
	return nil
}

func (f *File) writer() {
	defer close(f.done)
	for {
		_, open := <-f.kick
		f.mu.Lock()
		buf := f.pending
		f.pending = f.spare[:0]
		f.mu.Unlock()
		if len(buf) > 0 {
			_, err := f.w.Write(buf)
			f.mu.Lock()
			if err != nil && f.err == nil {
				f.err = fmt.Errorf("audit write: %w", err)
			}
			f.written += uint64(len(buf))
			if cap(buf) <= 1<<20 {
				f.spare = buf[:0]
			}
			f.flushed.Broadcast()
			f.mu.Unlock()
		}
		if !open {
			return
		}
		// Let events gather for a moment: under load one write then
		// carries many sessions' events instead of one each.
		time.Sleep(time.Duration(f.window.Load()))
	}
}

// SetFlushEvery sets how long events gather in memory before they are
// written together (config audit.flush_every). Each write wakes the
// writer's thread; under load those wake-ups cost the relay more than
// the events do, so the time is a trade between CPU and how many events
// a crash of the process could lose.
func (f *File) SetFlushEvery(d time.Duration) {
	if d > 0 {
		f.window.Store(int64(d))
	}
}

// Flush waits until every event recorded so far is written.
func (f *File) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	target := f.seq
	for f.written < target && f.err == nil && !f.closed {
		select {
		case f.kick <- struct{}{}:
		default:
		}
		f.flushed.Wait()
	}
	return f.err
}

// Close writes what is pending and closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	close(f.kick)
	f.mu.Unlock()
	<-f.done
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if f.c != nil {
		if cerr := f.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Channel sends every event to a channel; tests assert on what arrives.
type Channel chan Event

// Record implements Sink. It never blocks the gateway: when the channel is
// full the event is reported as not recorded.
func (c Channel) Record(e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	select {
	case c <- e:
		return nil
	default:
		return fmt.Errorf("audit channel full")
	}
}

// Multi records to every sink; the first error is returned.
type Multi []Sink

// Record implements Sink.
func (m Multi) Record(e Event) error {
	var first error
	for _, s := range m {
		if err := s.Record(e); err != nil && first == nil {
			first = err
		}
	}
	return first
}
