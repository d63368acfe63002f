// Package alert sends the audit events that need a person's attention
// (an account locked by failed logins, a break-glass login, the gateway
// locked or unlocked, an account about to expire) to a webhook, as they
// happen: the security team's chat, ticketing or SIEM. The audit log stays
// the record; the webhook is the nudge. Each delivery is signed with
// HMAC-SHA-256 when a secret is configured, retried a few times, and never
// holds up the gateway: alerts wait in a bounded queue.
package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA-256 of the body
// under the shared secret.
const SignatureHeader = "X-Sekisho-Signature"

// queueLen bounds the alerts waiting for delivery.
const queueLen = 1000

// Is reports whether an event is an alert.
func Is(e audit.Event) bool {
	switch e.Type {
	case audit.AccountLocked, audit.AccountExpiring, audit.GatewayLock:
		return true
	case audit.BreakGlass:
		return e.Actor == "" // a use, not its review
	}
	return false
}

// Message is the body posted for one alert.
type Message struct {
	// Text is one line for a person ("break-glass login by ...").
	Text  string      `json:"text"`
	Event audit.Event `json:"event"`
}

func text(e audit.Event) string {
	var what string
	switch e.Type {
	case audit.AccountLocked:
		what = fmt.Sprintf("account %q locked after failed logins from %s", e.User, e.Source)
	case audit.AccountExpiring:
		what = fmt.Sprintf("account %q expires soon", e.User)
	case audit.GatewayLock:
		what = "gateway lock changed by " + e.Actor
	case audit.BreakGlass:
		what = fmt.Sprintf("break-glass login by %q from %s: review it with 'sekisho breakglass list'", e.User, e.Source)
	default:
		what = string(e.Type)
	}
	if e.Reason != "" {
		what += " (" + e.Reason + ")"
	}
	return "sekisho: " + what
}

// Webhook delivers alerts to one URL.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
	log    *slog.Logger
	retry  []time.Duration

	mu      sync.Mutex
	queue   []audit.Event
	closed  bool
	kick    chan struct{}
	done    chan struct{}
	dropped int
}

// Options configure a Webhook.
type Options struct {
	URL string
	// Secret signs each body (nil: unsigned).
	Secret []byte
	// CAFile verifies the receiver (default: system roots).
	CAFile string
	Log    *slog.Logger
	// Retry is the wait before each further attempt (default 1 s, 5 s,
	// 30 s).
	Retry []time.Duration
}

// New starts a Webhook; Close stops it.
func New(o Options) (*Webhook, error) {
	if !strings.HasPrefix(o.URL, "https://") {
		return nil, errors.New("alerts.webhook must be an https:// URL")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("alerts.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("alerts.ca_file: no certificates")
		}
		tc.RootCAs = pool
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Retry == nil {
		o.Retry = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
	}
	w := &Webhook{url: o.URL, secret: o.Secret, log: o.Log, retry: o.Retry,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}},
		kick:   make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w, nil
}

// Notify queues an alert without waiting. When the queue is full the
// oldest alert is dropped (and counted in the log): the newest say most
// about what is happening now.
func (w *Webhook) Notify(e audit.Event) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	if len(w.queue) >= queueLen {
		w.queue = w.queue[1:]
		w.dropped++
	}
	w.queue = append(w.queue, e)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Webhook) run() {
	defer close(w.done)
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			closed := w.closed
			w.mu.Unlock()
			if closed {
				return
			}
			<-w.kick
			continue
		}
		e := w.queue[0]
		w.queue = w.queue[1:]
		dropped := w.dropped
		w.dropped = 0
		w.mu.Unlock()
		if dropped > 0 {
			w.log.Error("alerts dropped: the webhook cannot keep up", "dropped", dropped)
		}
		w.deliver(e)
	}
}

func (w *Webhook) deliver(e audit.Event) {
	body, _ := json.Marshal(Message{Text: text(e), Event: e})
	var err error
	for attempt := 0; ; attempt++ {
		if err = w.post(body); err == nil {
			return
		}
		if attempt >= len(w.retry) {
			break
		}
		time.Sleep(w.retry[attempt])
	}
	w.log.Error("alert not delivered", "type", e.Type, "user", e.User, "err", err)
}

func (w *Webhook) post(body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sekisho-alert/1")
	if w.secret != nil {
		m := hmac.New(sha256.New, w.secret)
		m.Write(body)
		req.Header.Set(SignatureHeader, "sha256="+hex.EncodeToString(m.Sum(nil)))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// Close delivers what is queued, waiting at most ctx.
func (w *Webhook) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sink records every event in Next and notifies the webhook of alerts
// that were recorded.
type Sink struct {
	Next    audit.Sink
	Webhook *Webhook
}

// Record implements audit.Sink.
func (s Sink) Record(e audit.Event) error {
	if err := s.Next.Record(e); err != nil {
		return err
	}
	if Is(e) {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		s.Webhook.Notify(e)
	}
	return nil
}
