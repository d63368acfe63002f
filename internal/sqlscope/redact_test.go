package sqlscope

import (
	"strings"
	"testing"
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
