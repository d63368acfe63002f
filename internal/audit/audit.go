// Package audit defines the events sekisho records and the sinks that
// record them. This is the first version: one JSON line per event. The
// tamper-evident, hash-chained log builds on these event types.
//
// Events never carry secrets: no passwords, no bind parameter values, and
// statement text only with its literal values replaced by placeholders.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
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
}

// Sink records events. A sink that cannot record returns an error and the
// gateway refuses what it was about to allow: nothing unaudited passes.
type Sink interface {
	Record(e Event) error
}

// File appends one JSON line per event. Each line reaches the kernel in a
// single write before Record returns.
type File struct {
	mu  sync.Mutex
	w   io.Writer
	c   io.Closer
	buf []byte
}

// OpenFile opens (creating, mode 0600) the JSON-lines file at path, or
// standard output for "-".
func OpenFile(path string) (*File, error) {
	if path == "-" {
		return &File{w: os.Stdout}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	return &File{w: f, c: f}, nil
}

// NewWriter records to w (tests and export).
func NewWriter(w io.Writer) *File { return &File{w: w} }

// Record implements Sink.
func (f *File) Record(e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit encode: %w", err)
	}
	f.buf = append(append(f.buf[:0], b...), '\n')
	if _, err := f.w.Write(f.buf); err != nil {
		return fmt.Errorf("audit write: %w", err)
	}
	return nil
}

// Close closes the file.
func (f *File) Close() error {
	if f.c == nil {
		return nil
	}
	return f.c.Close()
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
