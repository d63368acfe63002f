package sqlscope

import (
	"fmt"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "literals", in: "SELECT * FROM hcp WHERE email = 'taro@example.jp' AND id = 42", want: "SELECT * FROM hcp WHERE email = $1 AND id = $2"},
		{name: "password", in: "ALTER ROLE x PASSWORD 'hunter2'", want: "ALTER ROLE x PASSWORD $1"},
		{name: "unparsable", in: "SELEC 'secret' FROM", want: "(unparsable statement of 19 bytes)"},
		{name: "multi", in: "select 1; select 'a'", want: "select $1; select $2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.in)
			if got != tt.want {
				t.Fatalf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if strings.Contains(got, "taro@") || strings.Contains(got, "hunter2") || strings.Contains(got, "secret") {
				t.Fatalf("a literal survived: %q", got)
			}
			if again := Redact(tt.in); again != got {
				t.Fatalf("cached result differs: %q", again)
			}
		})
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("select 'x'")
	f.Add("select $$a$$ || E'\\x41'")
	f.Fuzz(func(t *testing.T, s string) {
		_ = Redact(s)
	})
}

// TestRedactShapeCacheAgreesWithParser checks that answers served from the
// shape cache equal what the parser says for each text.
func TestRedactShapeCacheAgreesWithParser(t *testing.T) {
	texts := []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 1",
		"SELECT abalance FROM pgbench_accounts WHERE aid = 99999",
		"SELECT abalance FROM pgbench_accounts WHERE aid = -5",
		"SELECT 1.5 + 2 FROM t LIMIT 10",
		"SELECT 7.25 + 300 FROM t LIMIT 1",
		"SELECT x::varchar(10) FROM t WHERE a = 5",
		"SELECT x::varchar(20) FROM t WHERE a = 6",
		"SELECT * FROM t ORDER BY 1",
		"SELECT * FROM t ORDER BY 2",
		"SELECT a FROM t1 WHERE b IN (1, 2, 3)",
		"SELECT a FROM t1 WHERE b IN (4, 5, 6)",
		"SELECT 1e5", "SELECT 2e5", "SELECT 1_000", "SELECT .5", "SELECT t.5",
		"SELECT true, 1", "SELECT false, 2",
		"INSERT INTO t VALUES (1, 2) RETURNING 3",
		"SELECT * FROM t WHERE a = 1 -- 2\n", "SELECT 'x', 1", "SELECT $1, 2",
		"SELECT a FROM t GROUP BY 1 HAVING count(*) > 2",
		"SELECT a FROM t GROUP BY 1 HAVING count(*) > 3",
	}
	for i := 0; i < 2; i++ { // the second pass is served from the caches
		for _, s := range texts {
			want, err := pg_query.Normalize(s)
			if err != nil {
				want = fmt.Sprintf("(unparsable statement of %d bytes)", len(s))
			}
			if got := Redact(s); got != want {
				t.Errorf("pass %d: Redact(%q) = %q, parser says %q", i, s, got, want)
			}
		}
	}
}

func FuzzRedactShape(f *testing.F) {
	f.Add("SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = 2")
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, s := range []string{a, b} {
			want, err := pg_query.Normalize(s)
			if err != nil {
				continue
			}
			if got := Redact(s); got != want {
				t.Fatalf("Redact(%q) = %q, parser says %q", s, got, want)
			}
		}
	})
}

// TestSameShapeAndSharedRedaction checks what a session may keep from one
// statement for the next: a shared redaction is the parser's for every
// text SameShape accepts, and SameShape accepts only texts that differ in
// their numbers.
func TestSameShapeAndSharedRedaction(t *testing.T) {
	first := "SELECT abalance FROM pgbench_accounts WHERE aid = 42;"
	sh := ShapeOf(first)
	red, shared := RedactShared(first, sh)
	if !shared || red != "SELECT abalance FROM pgbench_accounts WHERE aid = $1;" {
		t.Fatalf("RedactShared(%q) = %q, %v", first, red, shared)
	}
	for _, tt := range []struct {
		text string
		same bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 7;", true},
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 1234567;", true},
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 7.5;", true},
		{"SELECT abalance FROM pgbench_accounts WHERE aid = '7';", false},             // a string literal: not shaped
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 7 OR aid = 8;", false},    // more numbers
		{"SELECT abalance FROM pgbench_accounts WHERE bid = 7;", false},               // another column
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 7; DROP TABLE x;", false}, // more text
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 7 -- x\n;", false},        // a comment
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 1e5;", false},             // not a plain number
	} {
		if got := SameShape(tt.text, sh); got != tt.same {
			t.Errorf("SameShape(%q) = %v, want %v", tt.text, got, tt.same)
		}
		if tt.same {
			want, err := pg_query.Normalize(tt.text)
			if err != nil || want != red {
				t.Errorf("%q: the parser's redaction %q (%v) is not the shared %q", tt.text, want, err, red)
			}
		}
	}
	if SameShape("SELECT 1", ShapeOf("SELECT 'a'")) || SameShape("SELECT x", ShapeOf("SELECT x")) {
		t.Error("SameShape accepted a shape without numbers")
	}
	if _, shared := RedactShared("SELECT 'a'", ShapeOf("SELECT 'a'")); shared {
		t.Error("a redaction by exact text reported shared")
	}
}
