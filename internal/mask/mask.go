// Package mask holds the masking functions the gateway applies to
// protected column values on their way to a client, in PostgreSQL's text
// and binary formats. A function that does not know how to mask a value of
// some type returns NULL for it: a value is never passed through because
// its format was unexpected.
package mask

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// Function names a masking function.
type Function string

const (
	Redact       Function = "redact"        // fixed text
	PartialEmail Function = "partial_email" // k***@example.jp
	YearOnly     Function = "year_only"     // 1980-05-03 → 1980-01-01
	Pseudonym    Function = "pseudonym"     // keyed HMAC-SHA-256, stable across sessions
	Null         Function = "null"          // SQL NULL
)

// Functions lists every masking function, for config validation.
var Functions = []Function{Redact, PartialEmail, YearOnly, Pseudonym, Null}

// Known reports whether f is a masking function.
func Known(f Function) bool {
	for _, k := range Functions {
		if k == f {
			return true
		}
	}
	return false
}

// RedactedText is what redact puts in place of a text value.
const RedactedText = "***"

var redacted = []byte(RedactedText)

// Type OIDs of the types masks understand (pg_type.dat).
const (
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
)

// Masker applies masking functions. It is safe for concurrent use.
type Masker struct {
	key []byte // the pseudonym key
}

// New makes a Masker; key is the secret for pseudonyms (held in the state
// store, so pseudonyms are stable across restarts and gateways).
func New(key []byte) *Masker { return &Masker{key: bytes.Clone(key)} }

func textual(oid uint32) bool {
	return oid == oidText || oid == oidVarchar || oid == oidBpchar || oid == oidName
}

// Stream is one session's masking state: a reusable HMAC and a bounded
// cache of pseudonyms (names and keys repeat across rows). It is not safe
// for concurrent use; each session's result direction has its own.
type Stream struct {
	m     *Masker
	mac   hash.Hash
	cache map[pseudoKey][]byte
	buf   []byte // this row's masked values (see Row)
}

// Row starts a new row: the values masked for the previous row have been
// sent and their bytes may be reused.
func (s *Stream) Row() { s.buf = s.buf[:0] }

type pseudoKey struct {
	oid    uint32
	format int16
	value  string
}

// maxCachedPseudonyms bounds a stream's cache; when full it starts over.
const maxCachedPseudonyms = 1 << 14

// Stream returns a new masking stream.
func (m *Masker) Stream() *Stream {
	return &Stream{m: m, mac: hmac.New(sha256.New, m.key), cache: map[pseudoKey][]byte{}}
}

// Apply is Masker.Apply with the stream's cache.
func (s *Stream) Apply(f Function, oid uint32, format int16, v []byte) []byte {
	if f != Pseudonym || v == nil {
		var out []byte
		out, s.buf = s.m.apply(s.buf, f, oid, format, v)
		return out
	}
	if p, ok := s.cache[pseudoKey{oid, format, string(v)}]; ok {
		return p
	}
	p := s.m.pseudonymWith(s.mac, oid, format, v)
	if len(s.cache) >= maxCachedPseudonyms {
		clear(s.cache)
	}
	s.cache[pseudoKey{oid, format, string(v)}] = p
	return p
}

// Apply masks one value of type oid in format (0 text, 1 binary). nil
// (SQL NULL) stays NULL.
func (m *Masker) Apply(f Function, oid uint32, format int16, v []byte) []byte {
	out, _ := m.apply(nil, f, oid, format, v)
	return out
}

// apply masks v, writing a new value (if it makes one) at the end of dst;
// it returns the value and dst. The value may instead be shared (redact)
// or nil (NULL): values are only read after masking.
func (m *Masker) apply(dst []byte, f Function, oid uint32, format int16, v []byte) ([]byte, []byte) {
	if v == nil {
		return nil, dst
	}
	switch f {
	case Redact:
		if textual(oid) {
			return redacted, dst // shared: values are only ever read after masking
		}
		return nil, dst
	case PartialEmail:
		if !textual(oid) {
			return nil, dst
		}
		return partialEmail(dst, v)
	case YearOnly:
		return yearOnly(dst, oid, format, v)
	case Pseudonym:
		return m.pseudonym(oid, format, v), dst
	}
	return nil, dst // Null, and any function this build does not know
}

// partialEmail keeps the first character of the local part and the
// domain: kenji.sato@example.jp → k***@example.jp.
func partialEmail(dst, v []byte) ([]byte, []byte) {
	at := bytes.LastIndexByte(v, '@')
	if at < 1 {
		return redacted, dst
	}
	start := len(dst)
	dst = append(dst, firstRune(v[:at])...)
	dst = append(dst, "***"...)
	dst = append(dst, v[at:]...)
	return dst[start:], dst
}

func firstRune(b []byte) []byte {
	for i := 1; i < len(b); i++ {
		if b[i]&0xC0 != 0x80 {
			return b[:i]
		}
	}
	return b
}

// pgEpoch is PostgreSQL's binary date and timestamp epoch.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// yearOnly keeps the year of a date or timestamp: the value becomes
// January 1 of its year (midnight for timestamps).
func yearOnly(dst []byte, oid uint32, format int16, v []byte) ([]byte, []byte) {
	start := len(dst)
	switch {
	case oid == oidDate && format == 0 && isISODate(v):
		// The common case, written straight into the stream's buffer.
		dst = append(dst, v[:4]...)
		dst = append(dst, "-01-01"...)
		return dst[start:], dst
	case oid == oidDate && format == 1 && len(v) == 4:
		days := int32(binary.BigEndian.Uint32(v))
		if days == 0x7FFFFFFF || days == -0x80000000 { // infinity
			return v, dst
		}
		d := pgEpoch.AddDate(0, 0, int(days))
		jan1 := time.Date(d.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
		dst = binary.BigEndian.AppendUint32(dst, uint32(int32(jan1.Sub(pgEpoch).Hours()/24)))
		return dst[start:], dst
	}
	out := yearOnlyValue(oid, format, v)
	if out == nil {
		return nil, dst
	}
	dst = append(dst, out...)
	return dst[start:], dst
}

func isISODate(v []byte) bool {
	return len(v) == 10 && v[4] == '-' && v[7] == '-' && allDigits(v[:4]) && allDigits(v[5:7]) && allDigits(v[8:])
}

// yearOnlyValue computes the year-only value; its result is copied into
// the stream's buffer, so the fixed-size cases below allocate nothing that
// escapes.
func yearOnlyValue(oid uint32, format int16, v []byte) []byte {
	switch oid {
	case oidDate:
		if format == 1 {
			if len(v) != 4 {
				return nil
			}
			days := int32(binary.BigEndian.Uint32(v))
			if days == 0x7FFFFFFF || days == -0x80000000 { // infinity
				return v
			}
			d := pgEpoch.AddDate(0, 0, int(days))
			jan1 := time.Date(d.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
			out := make([]byte, 4)
			binary.BigEndian.PutUint32(out, uint32(int32(jan1.Sub(pgEpoch).Hours()/24)))
			return out
		}
		return yearOnlyText(v, false)
	case oidTimestamp, oidTimestamptz:
		if format == 1 {
			if len(v) != 8 {
				return nil
			}
			us := int64(binary.BigEndian.Uint64(v))
			if us == 0x7FFFFFFFFFFFFFFF || us == -0x8000000000000000 {
				return v
			}
			t := pgEpoch.Add(time.Duration(us) * time.Microsecond)
			jan1 := time.Date(t.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
			out := make([]byte, 8)
			binary.BigEndian.PutUint64(out, uint64(jan1.Sub(pgEpoch).Microseconds()))
			return out
		}
		return yearOnlyText(v, true)
	}
	if textual(oid) {
		return yearOnlyText(v, false)
	}
	return nil
}

// yearOnlyText rewrites a date in any DateStyle (ISO 1980-05-03, SQL
// 05/03/1980, Postgres 05-03-1980, German 03.05.1980) to January 1 of its
// year in the same style: the year is the digit run of four or more, every
// other digit run becomes 01. Timestamps keep only their date part, at
// midnight, with the ISO style's time zone offset dropped. Anything else
// (a weekday-name style, free text) becomes NULL.
func yearOnlyText(v []byte, timestamp bool) []byte {
	if !timestamp && len(v) == 10 && v[4] == '-' && v[7] == '-' && allDigits(v[:4]) && allDigits(v[5:7]) && allDigits(v[8:]) {
		// ISO, the default DateStyle: the common case without the general
		// scan.
		out := make([]byte, 10)
		copy(out, v[:4])
		copy(out[4:], "-01-01")
		return out
	}
	s := string(v)
	if s == "infinity" || s == "-infinity" {
		return v
	}
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	if timestamp {
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			return nil
		}
		s = s[:i]
	}
	var out []byte
	years := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if j-i >= 4 {
				out = append(out, s[i:j]...)
				years++
			} else {
				out = append(out, "01"...)
			}
			i = j
		case c == '-' || c == '/' || c == '.':
			out = append(out, c)
			i++
		default:
			return nil
		}
	}
	if years != 1 {
		return nil
	}
	if timestamp {
		out = append(out, " 00:00:00"...)
	}
	if bc {
		out = append(out, " BC"...)
	}
	return out
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// pseudonym replaces a value with a keyed hash of its canonical text, so
// equal values get equal pseudonyms in every table and format (joins on
// pseudonyms work) and nobody without the key can reverse or test one.
func (m *Masker) pseudonym(oid uint32, format int16, v []byte) []byte {
	return m.pseudonymWith(hmac.New(sha256.New, m.key), oid, format, v)
}

func (m *Masker) pseudonymWith(mac hash.Hash, oid uint32, format int16, v []byte) []byte {
	canon, ok := canonical(oid, format, v)
	if !ok {
		return nil
	}
	mac.Reset()
	mac.Write(canon)
	var buf [sha256.Size]byte
	sum := mac.Sum(buf[:0])
	switch {
	case textual(oid):
		return []byte("p_" + strings.ToLower(b32.EncodeToString(sum[:10])))
	case oid == oidInt8 || oid == oidInt4 || oid == oidInt2:
		size := map[uint32]int{oidInt8: 8, oidInt4: 4, oidInt2: 2}[oid]
		n := binary.BigEndian.Uint64(sum[:8]) >> (65 - 8*size) // positive, fits the type
		if format == 1 {
			out := make([]byte, 8)
			binary.BigEndian.PutUint64(out, n)
			return out[8-size:]
		}
		return strconv.AppendUint(nil, n, 10)
	}
	return nil
}

// canonical is a value's text form, whatever format it arrived in.
func canonical(oid uint32, format int16, v []byte) ([]byte, bool) {
	if format == 0 || textual(oid) {
		return v, true
	}
	switch oid {
	case oidInt8:
		if len(v) == 8 {
			return strconv.AppendInt(nil, int64(binary.BigEndian.Uint64(v)), 10), true
		}
	case oidInt4:
		if len(v) == 4 {
			return strconv.AppendInt(nil, int64(int32(binary.BigEndian.Uint32(v))), 10), true
		}
	case oidInt2:
		if len(v) == 2 {
			return strconv.AppendInt(nil, int64(int16(binary.BigEndian.Uint16(v))), 10), true
		}
	}
	return nil, false
}

// Describe says what f does, for policy explain.
func Describe(f Function) string {
	switch f {
	case Redact:
		return fmt.Sprintf("replaced by %q (non-text types: NULL)", RedactedText)
	case PartialEmail:
		return "first character and domain kept (k***@example.jp)"
	case YearOnly:
		return "January 1 of the same year"
	case Pseudonym:
		return "keyed pseudonym (HMAC-SHA-256), the same for equal values"
	case Null:
		return "NULL"
	}
	return "NULL (unknown function)"
}
