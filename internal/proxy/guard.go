package proxy

import (
	"net"
	"sync"
	"time"
)

// addressLimiter counts failed logins per source address in fixed windows.
// It is in memory: a restart forgets it, which the per-name lockout in the
// state store does not.
type addressLimiter struct {
	mu      sync.Mutex
	windows map[string]*failureWindow
}

type failureWindow struct {
	start time.Time
	count int
}

// maxTrackedAddresses bounds the limiter's memory. When it is full, new
// addresses go untracked (the per-name lockout still applies to them).
const maxTrackedAddresses = 100_000

func newAddressLimiter() *addressLimiter {
	return &addressLimiter{windows: make(map[string]*failureWindow)}
}

func addressKey(source string) string {
	if host, _, err := net.SplitHostPort(source); err == nil {
		return host
	}
	return source
}

// blocked reports whether the address has used up its failures.
func (l *addressLimiter) blocked(source string, now time.Time, window time.Duration, limit int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.windows[addressKey(source)]
	return w != nil && now.Sub(w.start) < window && w.count >= limit
}

// fail records a failed login from the address.
func (l *addressLimiter) fail(source string, now time.Time, window time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := addressKey(source)
	w := l.windows[k]
	if w == nil || now.Sub(w.start) >= window {
		if w == nil && len(l.windows) >= maxTrackedAddresses {
			l.pruneLocked(now, window)
			if len(l.windows) >= maxTrackedAddresses {
				return
			}
		}
		w = &failureWindow{start: now}
		l.windows[k] = w
	}
	w.count++
}

func (l *addressLimiter) prune(now time.Time, window time.Duration) {
	l.mu.Lock()
	l.pruneLocked(now, window)
	l.mu.Unlock()
}

func (l *addressLimiter) pruneLocked(now time.Time, window time.Duration) {
	for k, w := range l.windows {
		if now.Sub(w.start) >= window {
			delete(l.windows, k)
		}
	}
}
