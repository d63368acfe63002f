// Package wire frames PostgreSQL protocol messages and enforces the limits
// the gateway places on them, around the message types of pgx's pgproto3.
//
// The gateway never trusts a length prefix: every frame is checked against a
// limit before a byte of its body is read, so a client (or a confused
// upstream) cannot make the gateway allocate more than the limit.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Limits mirrored from PostgreSQL's own sources.
const (
	// MaxStartupPacketLen mirrors MAX_STARTUP_PACKET_LENGTH in
	// src/include/libpq/pqcomm.h: the server refuses longer startup packets.
	MaxStartupPacketLen = 10000

	// MinStartupPacketLen is the length word plus the protocol/request code.
	MinStartupPacketLen = 8

	// DefaultMaxMessageLen mirrors PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1,
	// 1 GiB) in src/include/libpq/libpq.h, lowered to 64 MiB: the gateway
	// must stay within bounded memory per session, and no statement or
	// bind message a person writes comes near that size.
	DefaultMaxMessageLen = 64 << 20

	// MaxAuthMessageLen mirrors PG_MAX_AUTH_TOKEN_LENGTH (65535) in
	// src/backend/libpq/auth.c for password and SASL messages.
	MaxAuthMessageLen = 65535
)

// Request codes carried in place of a protocol version in the first packet
// (src/include/libpq/pqcomm.h).
const (
	CancelRequestCode = 80877102
	SSLRequestCode    = 80877103
	GSSENCRequestCode = 80877104
)

// ErrMessageTooLong means a frame announced a body longer than the limit.
var ErrMessageTooLong = errors.New("message exceeds the size limit")

// ErrMalformed means a frame's length or contents are not valid protocol.
var ErrMalformed = errors.New("malformed message")

// ReadStartup reads the first packet of a connection (which has no type
// byte) and decodes it into an SSLRequest, GSSEncRequest, CancelRequest or
// StartupMessage.
func ReadStartup(r io.Reader) (pgproto3.FrontendMessage, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < MinStartupPacketLen || n > MaxStartupPacketLen {
		return nil, fmt.Errorf("startup packet length %d: %w", n, ErrMalformed)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return DecodeStartup(body)
}

// DecodeStartup decodes the body of a startup packet (the bytes after its
// length word).
func DecodeStartup(body []byte) (pgproto3.FrontendMessage, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("startup packet too short: %w", ErrMalformed)
	}
	code := binary.BigEndian.Uint32(body)
	switch code {
	case SSLRequestCode:
		if len(body) != 4 {
			return nil, fmt.Errorf("SSLRequest length: %w", ErrMalformed)
		}
		return &pgproto3.SSLRequest{}, nil
	case GSSENCRequestCode:
		if len(body) != 4 {
			return nil, fmt.Errorf("GSSENCRequest length: %w", ErrMalformed)
		}
		return &pgproto3.GSSEncRequest{}, nil
	case CancelRequestCode:
		m := &pgproto3.CancelRequest{}
		if err := m.Decode(body); err != nil {
			return nil, fmt.Errorf("CancelRequest: %w", ErrMalformed)
		}
		return m, nil
	}
	if code>>16 != 3 {
		return nil, fmt.Errorf("unsupported frontend protocol %d.%d: %w", code>>16, code&0xffff, ErrMalformed)
	}
	// pgproto3 knows only the minor versions it speaks; the gateway accepts
	// any 3.x and negotiates down to 3.0 itself, as PostgreSQL does.
	fixed := make([]byte, len(body))
	copy(fixed, body)
	binary.BigEndian.PutUint32(fixed, pgproto3.ProtocolVersion30)
	m := &pgproto3.StartupMessage{}
	if err := m.Decode(fixed); err != nil {
		return nil, fmt.Errorf("StartupMessage: %w", ErrMalformed)
	}
	m.ProtocolVersion = code
	return m, nil
}

// Reader reads typed protocol frames. The body it returns is valid until
// the next call to Next.
type Reader struct {
	br      *bufio.Reader
	max     int
	buf     []byte
	maxBuf  int
	inFrame bool // a frame's header is consumed and its body is not
}

// NewReader returns a Reader that refuses frames with bodies longer than
// maxLen bytes.
func NewReader(r io.Reader, maxLen int) *Reader {
	if maxLen <= 0 {
		maxLen = DefaultMaxMessageLen
	}
	return &Reader{br: bufio.NewReaderSize(r, 32<<10), max: maxLen, maxBuf: 1 << 20}
}

// SetMaxLen changes the body limit (the authentication phase uses a lower
// one than the session).
func (r *Reader) SetMaxLen(n int) { r.max = n }

// Buffered reports how many bytes are already read from the connection but
// not yet returned. The relay flushes its writer when this reaches zero, so
// it batches writes while a burst lasts and never holds a reply back.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// Take returns (and consumes) the bytes buffered and not yet returned by
// Next, so another reader can carry on from where this one stopped. Call
// it between messages.
func (r *Reader) Take() []byte {
	b, _ := r.br.Peek(r.br.Buffered())
	out := append([]byte(nil), b...)
	_, _ = r.br.Discard(len(b))
	return out
}

// Frame splits the first message off b, as Next would read it: typ and
// body, and n, the bytes it took (0 when b does not hold a whole message
// yet). The limits and errors are Next's.
func Frame(b []byte, maxLen int) (typ byte, body []byte, n int, err error) {
	if len(b) < 5 {
		return 0, nil, 0, nil
	}
	typ = b[0]
	l := int(int32(binary.BigEndian.Uint32(b[1:])))
	if l < 4 {
		return 0, nil, 0, fmt.Errorf("message %q length %d: %w", typ, l, ErrMalformed)
	}
	if l-4 > maxLen {
		return 0, nil, 0, fmt.Errorf("message %q length %d, limit %d: %w", typ, l-4, maxLen, ErrMessageTooLong)
	}
	if len(b) < 1+l {
		return 0, nil, 0, nil
	}
	return typ, b[5 : 1+l : 1+l], 1 + l, nil
}

// Clean reports whether the reader stopped between frames with nothing
// buffered: the connection under it can be handed to another reader
// without losing or splitting a message.
func (r *Reader) Clean() bool { return !r.inFrame && r.br.Buffered() == 0 }

// Next reads one frame: its type byte and its body.
func (r *Reader) Next() (byte, []byte, error) {
	hdr, err := r.br.Peek(5)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	typ := hdr[0]
	n := int(int32(binary.BigEndian.Uint32(hdr[1:])))
	if n < 4 {
		return 0, nil, fmt.Errorf("message %q length %d: %w", typ, n, ErrMalformed)
	}
	if n-4 > r.max {
		return 0, nil, fmt.Errorf("message %q length %d, limit %d: %w", typ, n-4, r.max, ErrMessageTooLong)
	}
	if _, err := r.br.Discard(5); err != nil {
		return 0, nil, err
	}
	r.inFrame = true
	body := r.body(n - 4)
	if _, err := io.ReadFull(r.br, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	r.inFrame = false
	return typ, body, nil
}

// body returns a buffer of n bytes, reusing the last one when it is big
// enough; a buffer grown past maxBuf for one large message is dropped
// afterwards so one big statement does not pin memory for the session.
func (r *Reader) body(n int) []byte {
	if cap(r.buf) < n {
		b := make([]byte, n)
		if n <= r.maxBuf {
			r.buf = b
		} else {
			r.buf = nil
		}
		return b
	}
	if cap(r.buf) > r.maxBuf {
		r.buf = nil
		return make([]byte, n)
	}
	return r.buf[:n]
}

// AppendFrame appends a frame with the given type and body to dst.
func AppendFrame(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(body)+4))
	return append(dst, body...)
}
