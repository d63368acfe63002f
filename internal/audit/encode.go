package audit

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e as one JSON object. It writes the same fields as
// encoding/json would with the struct tags, without reflection: the
// gateway records an event per statement, and this is on that path.
func (e *Event) AppendJSON(b []byte) []byte {
	return e.appendJSON(b, nil)
}

// appendJSON is AppendJSON with a cache for the time's whole seconds.
func (e *Event) appendJSON(b []byte, tc *timeCache) []byte {
	b = append(b, `{"time":"`...)
	b = tc.append(b, e.Time)
	b = append(b, `","type":`...)
	b = appendString(b, string(e.Type))
	if e.Session != 0 {
		b = append(b, `,"session":`...)
		b = strconv.AppendUint(b, e.Session, 10)
	}
	b = appendField(b, "user", e.User)
	b = appendField(b, "role", e.Role)
	b = appendField(b, "source", e.Source)
	b = appendField(b, "database", e.Database)
	b = appendField(b, "reason", e.Reason)
	b = appendField(b, "statement", e.Statement)
	b = appendField(b, "protocol", e.Protocol)
	if e.Rows != 0 {
		b = append(b, `,"rows":`...)
		b = strconv.AppendInt(b, e.Rows, 10)
	}
	if e.Duration != 0 {
		b = append(b, `,"duration_ms":`...)
		b = appendMillis(b, e.Duration)
	}
	b = appendField(b, "outcome", e.Outcome)
	b = appendField(b, "sqlstate", e.SQLState)
	b = appendField(b, "actor", e.Actor)
	b = appendField(b, "method", e.Method)
	return append(b, '}')
}

// timeCache keeps the formatted whole seconds of the last time written:
// events come many to a second, and formatting the date each time cost
// more than the rest of a statement's event.
type timeCache struct {
	sec    int64
	prefix []byte // "2006-01-02T15:04:05" of sec, in UTC
}

// append appends t as t.UTC().AppendFormat(b, time.RFC3339Nano) would. A
// nil cache formats every time.
func (tc *timeCache) append(b []byte, t time.Time) []byte {
	t = t.UTC()
	if tc == nil {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	if sec := t.Unix(); sec != tc.sec || tc.prefix == nil {
		tc.sec = sec
		tc.prefix = t.AppendFormat(tc.prefix[:0], "2006-01-02T15:04:05")
	}
	b = append(b, tc.prefix...)
	if ns := t.Nanosecond(); ns != 0 {
		var d [10]byte
		d[0] = '.'
		for i := 9; i > 0; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, 'Z')
}

// appendMillis appends ms as strconv.AppendFloat(b, ms, 'f', -1, 64)
// would. Durations are whole microseconds (ms = µs/1000), whose shortest
// decimal form is the microseconds with the point moved three places (up
// to 15 significant digits no shorter decimal names the same float64), so
// they are written as integers; anything else goes to strconv.
func appendMillis(b []byte, ms float64) []byte {
	us := math.Round(ms * 1000)
	if !(us >= 0 && us < 1e15 && us/1000 == ms) {
		return strconv.AppendFloat(b, ms, 'f', -1, 64)
	}
	n := int64(us)
	b = strconv.AppendInt(b, n/1000, 10)
	f := n % 1000
	if f == 0 {
		return b
	}
	b = append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
	for b[len(b)-1] == '0' {
		b = b[:len(b)-1]
	}
	return b
}

func appendField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028/U+2029
// escaped so a line never splits in a JavaScript reader.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && plain8(s, i) {
			i += 8 // the usual case: eight bytes that need no escape
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Byte-wise constants for plain8.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain8 reports whether the eight bytes of s at i are printable ASCII
// other than '"' and '\\', which JSON takes as they are. It tests them
// together, as one word (no byte is 0x80 or above, none below 0x20,
// none equal to either quote character).
func plain8(s string, i int) bool {
	x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
	if x&highs != 0 {
		return false
	}
	// A byte b below n (for n ≤ 0x80, with no high bits set) borrows
	// into its own high bit in b − n; the others do not.
	below := func(x, n uint64) bool { return (x-ones*n)&^x&highs != 0 }
	return !below(x, 0x20) && !below(x^(ones*'"'), 1) && !below(x^(ones*'\\'), 1)
}
