// Package sqlscope analyses SQL with the real PostgreSQL parser
// (pg_query_go). It never decides with a home-made parser.
package sqlscope

import (
	"fmt"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Redact returns the statement with every literal value replaced by a
// placeholder ($1, $2, ...), as pg_stat_statements shows it. Text that the
// parser cannot read is not returned at all (it could hold a value): the
// result then says only that it was unparsable and how long it was.
func Redact(sql string) string { return RedactShape(sql, ShapeOf(sql)) }

// Shape is a statement's literal shape (see LiteralShape), computed once
// per statement for both the redaction and the decision caches.
type Shape struct {
	Key string // the text with each numeric literal replaced by NUL
	N   int    // how many numeric literals
	OK  bool   // the text has a shape (see literalShape)
	// Known: the fields above were computed (a zero Shape was not).
	Known bool
}

// ShapeOf computes sql's Shape.
func ShapeOf(sql string) Shape {
	key, n, ok := literalShape(sql)
	return Shape{Key: key, N: n, OK: ok, Known: true}
}

// RedactShape is Redact for a statement whose Shape is known.
func RedactShape(sql string, sh Shape) string {
	out, _ := RedactShared(sql, sh)
	return out
}

// RedactShared is RedactShape, and reports whether the result is the
// redaction of every text of sh's shape (shared), so a caller may keep it
// for the next text that has the same shape (see SameShape).
func RedactShared(sql string, sh Shape) (out string, shared bool) {
	if !sh.Known {
		sh = ShapeOf(sql)
	}
	key, n, shaped := sh.Key, sh.N, sh.OK
	if !shaped || n == 0 {
		// Only such texts are cached by exact text (below).
		if v, ok := exactCache.get(sql); ok {
			return v, false
		}
	}
	// Statements that differ only in numeric literals (an application's
	// "WHERE id = 42", "WHERE id = 43") share one parser result: see
	// literalShape for why that result is the same for every such text.
	if shaped && n > 0 {
		if v, ok := shapeCache.get(key); ok {
			return v, true
		}
	}
	out, err := pg_query.Normalize(sql)
	if err != nil {
		out = fmt.Sprintf("(unparsable statement of %d bytes)", len(sql))
	} else if shaped && n > 0 && placeholders(out) == n {
		// Only when the parser replaced exactly the numbers we found (and
		// nothing else) is the result the same for every text of this shape.
		shapeCache.put(key, out)
		shared = true
	}
	if !shaped || n == 0 {
		exactCache.put(sql, out)
	}
	return out, shared
}

// SameShape reports whether sql has the literal shape sh (which must
// have numeric literals: sh.OK and sh.N > 0), without allocating: a
// client that repeats one statement with other numbers is recognised
// at the cost of one scan of the text.
func SameShape(sql string, sh Shape) bool {
	if !sh.OK || sh.N == 0 {
		return false
	}
	var buf [256]byte
	key, n, ok := appendShape(buf[:0], sql)
	return ok && n == sh.N && string(key) == sh.Key
}

// LiteralShape returns sql with each numeric literal replaced by NUL and
// how many there were, or ok=false for text it does not shape (see
// literalShape). Statements of one shape parse to the same tree but for
// the values of those literals.
func LiteralShape(sql string) (key string, n int, ok bool) { return literalShape(sql) }

// literalShape returns sql with each numeric literal replaced by NUL, and
// how many there were. It declines (ok=false) anything but plain ASCII
// keywords, identifiers, numbers, operators and punctuation: no quotes,
// dollar signs, backslashes, comments, or numbers glued to letters or dots.
// In what remains a numeric literal is a single token whose value cannot
// change how the rest is parsed; Redact still takes every result from the
// real parser and checks that it replaced exactly those numbers.
func literalShape(sql string) (key string, n int, ok bool) {
	var buf [256]byte // on the stack for the usual short statement
	b, n, ok := appendShape(buf[:0], sql)
	if !ok {
		return "", 0, false
	}
	return string(b), n, true
}

// appendShape appends literalShape's key to b.
func appendShape(b []byte, sql string) (key []byte, n int, ok bool) {
	if len(sql) > maxCachedText {
		return b, 0, false
	}
	isIdent := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c >= 0x80 || c == '\'' || c == '"' || c == '$' || c == '\\' || c == 0:
			return b, 0, false
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-', c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			return b, 0, false
		case c == '.' && i+1 < len(sql) && isDigit(sql[i+1]):
			return b, 0, false
		case isIdent(c) && !isDigit(c):
			j := i
			for j < len(sql) && isIdent(sql[j]) {
				j++
			}
			b = append(b, sql[i:j]...)
			i = j
		case isDigit(c):
			if i > 0 && sql[i-1] == '.' {
				return b, 0, false
			}
			j := i
			for j < len(sql) && isDigit(sql[j]) {
				j++
			}
			if j+1 < len(sql) && sql[j] == '.' && isDigit(sql[j+1]) {
				j++
				for j < len(sql) && isDigit(sql[j]) {
					j++
				}
			}
			if j < len(sql) && (isIdent(sql[j]) || sql[j] == '.') {
				return b, 0, false // 1e5, 1_000, 0x1F, 12.: leave them to the parser
			}
			b = append(b, 0) // NUL: the one byte no shaped text contains
			n++
			i = j
		default:
			b = append(b, c)
			i++
		}
	}
	return b, n, true
}

// placeholders counts "$<digit>" in a normalized statement.
func placeholders(s string) int {
	n := 0
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '$' && s[i+1] >= '0' && s[i+1] <= '9' {
			n++
		}
	}
	return n
}

// Caches of recent results: clients repeat the same texts (prepared
// statements, ORMs), and the parser costs microseconds.
const maxCachedText = 4096

var (
	exactCache = newCache(4096)
	shapeCache = newCache(4096)
)

type cache struct {
	mu  sync.Mutex
	m   map[string]string
	max int
}

func newCache(max int) *cache { return &cache{m: make(map[string]string), max: max} }

func (c *cache) get(k string) (string, bool) {
	if len(k) > maxCachedText {
		return "", false
	}
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	return v, ok
}

func (c *cache) put(k, v string) {
	if len(k) > maxCachedText {
		return
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		// Dropping everything is crude but bounded and O(1) amortised;
		// the hot texts come back on the next call.
		clear(c.m)
	}
	c.m[k] = v
	c.mu.Unlock()
}
