package alert

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
)

type memSink struct {
	mu     sync.Mutex
	events []audit.Event
	fail   bool
}

func (m *memSink) Record(e audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.events = append(m.events, e)
	return nil
}

// receiver is a webhook endpoint that fails its first n posts.
type receiver struct {
	mu       sync.Mutex
	failures int
	got      []Message
	sigOK    []bool
	got1     chan struct{}
}

func startReceiver(t *testing.T, failures int, secret []byte) (*receiver, string, string) {
	rc := &receiver{failures: failures, got1: make(chan struct{}, 100)}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.failures > 0 {
			rc.failures--
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var m Message
		_ = json.Unmarshal(body, &m)
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		rc.got = append(rc.got, m)
		rc.sigOK = append(rc.sigOK, r.Header.Get(SignatureHeader) == "sha256="+hex.EncodeToString(mac.Sum(nil)))
		rc.got1 <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return rc, srv.URL, ca
}

func TestAlertsReachTheWebhookSigned(t *testing.T) {
	secret := []byte("shared-secret")
	rc, url, ca := startReceiver(t, 2, secret)
	wh, err := New(Options{URL: url + "/hook", Secret: secret, CAFile: ca, Retry: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	mem := &memSink{}
	sink := Sink{Next: mem, Webhook: wh}
	for _, e := range []audit.Event{
		{Type: audit.Statement, User: "taro", Statement: "SELECT 1"},                                   // not an alert
		{Type: audit.AccountLocked, User: "taro", Source: "192.0.2.7:5555", Reason: "5 failed logins"}, // alert
		{Type: audit.BreakGlass, Actor: "admin", Reason: "use #1 reviewed"},                            // a review, not an alert
		{Type: audit.BreakGlass, User: "emergency", Source: "10.0.0.1:1"},                              // alert
	} {
		if err := sink.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		select {
		case <-rc.got1:
		case <-time.After(10 * time.Second):
			t.Fatal("alerts did not arrive (the receiver failed twice first: retries)")
		}
	}
	if err := wh.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != 2 || rc.got[0].Event.Type != audit.AccountLocked || rc.got[1].Event.Type != audit.BreakGlass {
		t.Fatalf("webhook got %+v", rc.got)
	}
	if !strings.Contains(rc.got[0].Text, `account "taro" locked`) || !strings.Contains(rc.got[1].Text, "sekisho breakglass list") {
		t.Errorf("texts: %q, %q", rc.got[0].Text, rc.got[1].Text)
	}
	for i, ok := range rc.sigOK {
		if !ok {
			t.Errorf("alert %d: signature does not verify", i)
		}
	}
	if len(mem.events) != 4 {
		t.Errorf("the audit sink recorded %d events, want all 4", len(mem.events))
	}
}

// An event the audit log could not record is refused, and not alerted
// either: the alert would describe something that has no record.
func TestUnrecordedEventIsNotAlerted(t *testing.T) {
	rc, url, ca := startReceiver(t, 0, nil)
	wh, err := New(Options{URL: url, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	sink := Sink{Next: &memSink{fail: true}, Webhook: wh}
	if err := sink.Record(audit.Event{Type: audit.AccountLocked, User: "x"}); err == nil {
		t.Fatal("a failed audit write was not reported")
	}
	if err := wh.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rc.got) != 0 {
		t.Fatalf("alerted %d unrecorded events", len(rc.got))
	}
}

func TestWebhookMustBeHTTPS(t *testing.T) {
	if _, err := New(Options{URL: "http://soc.example.jp/hook"}); err == nil {
		t.Fatal("a plain HTTP webhook was accepted")
	}
}
