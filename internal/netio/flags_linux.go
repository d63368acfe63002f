package netio

import "syscall"

// sendFlags: a peer that has gone gives EPIPE, not SIGPIPE.
const sendFlags = syscall.MSG_NOSIGNAL
