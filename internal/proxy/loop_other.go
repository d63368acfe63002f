//go:build !linux

package proxy

import "errors"

// eventLoop exists on Linux only (epoll); elsewhere every session is
// relayed by goroutines.
type eventLoop struct{}

type loopSession struct{}

func newEventLoop(*Server) (*eventLoop, error) {
	return nil, errors.New("no event loop on this system")
}

func loopable(*Session) bool { return false }

func (*eventLoop) relay(*Session) error { return errors.New("no event loop on this system") }

func (*eventLoop) close() {}

func (*loopSession) stop() {}
