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
func Redact(sql string) string {
	if v, ok := redactCache.get(sql); ok {
		return v
	}
	out, err := pg_query.Normalize(sql)
	if err != nil {
		out = fmt.Sprintf("(unparsable statement of %d bytes)", len(sql))
	}
	redactCache.put(sql, out)
	return out
}

// redactCache keeps recent results: clients repeat the same texts
// (prepared statements, ORMs), and the parser costs microseconds.
var redactCache = newCache(4096, 4096)

type cache struct {
	mu      sync.Mutex
	m       map[string]string
	max     int
	maxText int
}

func newCache(max, maxText int) *cache {
	return &cache{m: make(map[string]string), max: max, maxText: maxText}
}

func (c *cache) get(k string) (string, bool) {
	if len(k) > c.maxText {
		return "", false
	}
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	return v, ok
}

func (c *cache) put(k, v string) {
	if len(k) > c.maxText {
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
