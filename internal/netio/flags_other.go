//go:build !linux

package netio

// sendFlags: elsewhere the runtime turns SIGPIPE on a socket into EPIPE.
const sendFlags = 0
