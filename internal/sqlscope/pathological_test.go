package sqlscope

import (
	"strconv"
	"strings"
	"testing"
)

// Pathological SQL is refused or handled; the analysis never crashes and
// never returns a statement it did not decide.
func TestPathological(t *testing.T) {
	cat := testCatalog()
	var in strings.Builder
	in.WriteString("SELECT id FROM public.hcp WHERE id IN (")
	for i := range 100000 {
		if i > 0 {
			in.WriteByte(',')
		}
		in.WriteString(strconv.Itoa(i))
	}
	in.WriteString(")")
	big := "SELECT email FROM public.hcp WHERE id = 1 OR title = '" + strings.Repeat("x", 1<<20) + "'"
	tests := []struct {
		name string
		sql  string
		// ok: analysed; otherwise an error or an unsure statement.
		ok bool
	}{
		{"deep parentheses", "SELECT " + strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000), true},
		{"deep parentheses around a column", "SELECT " + strings.Repeat("(", 5000) + "email" + strings.Repeat(")", 5000) + " FROM public.hcp", true},
		{"deep subqueries", strings.Repeat("SELECT * FROM (", 300) + "SELECT email FROM public.hcp" + strings.Repeat(") s", 300), false},
		{"deep expressions", "SELECT " + strings.Repeat("lower(", 1000) + "email" + strings.Repeat(")", 1000) + " FROM public.hcp", false},
		{"huge IN list", in.String(), true},
		{"1 MB statement", big, true},
		{"too long", strings.Repeat(" ", MaxAnalysedBytes+1) + "SELECT 1", false},
		{"invalid UTF-8", "SELECT '\xff\xfe' FROM public.hcp", false},
		{"NUL byte", "SELECT 1\x00; SELECT email::text FROM public.hcp", false},
		{"empty", "", true},
		{"only comments", "-- nothing\n/* at all */", true},
		{"many statements", strings.Repeat("SELECT 1;", 10000), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts, err := Analyze(tt.sql, cat)
			ok := err == nil
			for _, st := range sts {
				ok = ok && st.Unsure == ""
			}
			if ok != tt.ok {
				t.Fatalf("analysed=%v (err %v), want %v", ok, err, tt.ok)
			}
			if tt.name == "deep expressions" && err == nil {
				// If the parser took it, the email use must still be seen.
				if !strings.Contains(uses(sts[0]), "hcp.email:expression") && sts[0].Unsure == "" {
					t.Fatalf("uses %s", uses(sts[0]))
				}
			}
		})
	}
}

func FuzzAnalyze(f *testing.F) {
	for _, s := range []string{
		"SELECT email FROM hcp", "SELECT lower(h.email) FROM public.hcp h WHERE h.id = $1",
		"WITH x AS (SELECT * FROM hcp) SELECT x FROM x", "COPY (SELECT 1) TO STDOUT", "SELECT * FROM hcp_contact",
		"UPDATE hcp SET name = email RETURNING *", "SELECT (SELECT email) FROM hcp NATURAL JOIN cases",
		"DECLARE c CURSOR FOR SELECT h.* FROM hcp h, LATERAL (SELECT h.email) l",
	} {
		f.Add(s)
	}
	cat := testCatalog()
	f.Fuzz(func(t *testing.T, sql string) {
		sts, err := Analyze(sql, cat)
		if err != nil {
			return
		}
		for _, st := range sts {
			if st.Class == "" && st.Unsure == "" {
				t.Fatalf("statement with no class and no doubt: %q", st.Text)
			}
		}
	})
}
