package sqlscope

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

// testCatalog is shaped like the demo: hcp and cases, a view over hcp,
// and a second schema with a table of the same name.
func testCatalog() *Snapshot {
	hcp := []string{"id", "name", "name_kana", "sex", "birth_date", "email", "institution", "institution_address", "title", "job_type", "department", "updated_at"}
	return NewSnapshot([]*Relation{
		{OID: 100, Schema: "public", Name: "hcp", Kind: 'r', Columns: hcp},
		{OID: 101, Schema: "public", Name: "cases", Kind: 'r', Columns: []string{"id", "registry", "diagnosis_code", "stage", "treatment", "institution", "start_date"}},
		{OID: 102, Schema: "public", Name: "hcp_contact", Kind: 'v', Columns: []string{"id", "email", "domain"},
			ViewQuery: "SELECT hcp.id, hcp.email, split_part(hcp.email, '@', 2) AS domain FROM hcp WHERE hcp.sex = 'F';"},
		{OID: 103, Schema: "other", Name: "hcp", Kind: 'r', Columns: []string{"id", "note"}},
		{OID: 104, Schema: "public", Name: "notes", Kind: 'r', Columns: []string{"id", "body"}},
	}, []string{"lower_evil"})
}

// uses renders a statement's uses as sorted "table.column:context".
func uses(st *Statement) string {
	var out []string
	for _, u := range st.Uses {
		out = append(out, fmt.Sprintf("%s.%s:%s", strings.TrimPrefix(u.Table, "public."), u.Name, u.Context))
	}
	sort.Strings(out)
	return strings.Join(slices.Compact(out), " ")
}

// wholeRow is every hcp column used as a whole row (and, through the
// value made of it, as an expression).
const wholeRow = "hcp.birth_date:expression hcp.birth_date:whole-row reference hcp.department:expression hcp.department:whole-row reference hcp.email:expression hcp.email:whole-row reference hcp.id:expression hcp.id:whole-row reference hcp.institution:expression hcp.institution:whole-row reference hcp.institution_address:expression hcp.institution_address:whole-row reference hcp.job_type:expression hcp.job_type:whole-row reference hcp.name:expression hcp.name:whole-row reference hcp.name_kana:expression hcp.name_kana:whole-row reference hcp.sex:expression hcp.sex:whole-row reference hcp.title:expression hcp.title:whole-row reference hcp.updated_at:expression hcp.updated_at:whole-row reference"

func TestAnalyzeUses(t *testing.T) {
	cat := testCatalog()
	tests := []struct {
		name, sql, want string
	}{
		{"plain column", "SELECT email FROM hcp", "hcp.email:output"},
		{"qualified alias", "SELECT h.email FROM public.hcp h", "hcp.email:output"},
		{"expression", "SELECT lower(h.email) FROM public.hcp h", "hcp.email:expression"},
		{"cast", "SELECT h.birth_date::text FROM public.hcp h", "hcp.birth_date:expression"},
		{"filter", "SELECT id FROM public.hcp WHERE email = $1", "hcp.email:filter hcp.id:output"},
		{"filter through function", "SELECT id FROM public.hcp WHERE lower(email) = 'x'", "hcp.email:expression hcp.id:output"},
		{"whole row", "SELECT row_to_json(h) FROM public.hcp h", wholeRow},
		{"subquery carries", "SELECT s.e FROM (SELECT email AS e FROM public.hcp) s", "hcp.email:output"},
		{"subquery transforms", "SELECT upper(s.e) FROM (SELECT email AS e FROM public.hcp) s", "hcp.email:expression"},
		{"cte carries", "WITH x AS (SELECT email FROM public.hcp) SELECT email FROM x", "hcp.email:output"},
		{"union", "SELECT email FROM public.hcp UNION SELECT 'a'", "hcp.email:expression"},
		{"scalar sublink", "SELECT (SELECT email FROM public.hcp LIMIT 1)", "hcp.email:expression"},
		{"in sublink", "SELECT id FROM public.cases WHERE institution IN (SELECT institution FROM public.hcp)", "cases.id:output cases.institution:filter hcp.institution:filter"},
		{"view plain", "SELECT email FROM hcp_contact", "hcp.email:output"},
		{"view derived", "SELECT domain FROM hcp_contact", "hcp.email:expression"},
		{"star", "SELECT * FROM public.cases", "cases.diagnosis_code:output cases.id:output cases.institution:output cases.registry:output cases.stage:output cases.start_date:output cases.treatment:output"},
		{"order by masked", "SELECT id FROM public.hcp ORDER BY email", "hcp.email:filter hcp.id:output"},
		{"order by position", "SELECT email FROM public.hcp ORDER BY 1", "hcp.email:filter hcp.email:output"},
		{"aggregate", "SELECT count(email) FROM public.hcp", "hcp.email:expression"},
		{"returning", "UPDATE public.hcp SET title = 'x' WHERE id = 1 RETURNING email", "hcp.email:expression hcp.id:filter"},
		{"insert select", "INSERT INTO notes SELECT id, email FROM public.hcp", "hcp.email:copy hcp.id:copy"},
		{"copy table", "COPY public.cases (id, stage) TO STDOUT", "cases.id:copy cases.stage:copy"},
		{"copy query", "COPY (SELECT email FROM public.hcp) TO STDOUT", "hcp.email:copy"},
		{"cursor", "DECLARE c CURSOR FOR SELECT email FROM public.hcp", "hcp.email:output"},
		{"ctas", "CREATE TABLE t AS SELECT email FROM public.hcp", "hcp.email:copy"},
		{"unicode escape", `SELECT U&"\0065mail" FROM public.hcp`, "hcp.email:output"},
		{"quoted", `SELECT "email" FROM public.hcp`, "hcp.email:output"},
		{"lateral", "SELECT l.e FROM public.cases c, LATERAL (SELECT h.email || '' AS e FROM public.hcp h WHERE h.institution = c.institution) l", "cases.institution:filter hcp.email:expression hcp.institution:filter"},
		{"function notation", "SELECT h.text FROM public.hcp h", wholeRow},
		{"cte shadows table", "WITH hcp AS (SELECT 1 AS email) SELECT email FROM hcp", ""},
		{"using join", "SELECT institution FROM public.hcp JOIN public.cases USING (institution)", "cases.institution:expression cases.institution:filter hcp.institution:expression hcp.institution:filter"},
		{"window", "SELECT id, rank() OVER (ORDER BY birth_date) FROM public.hcp", "hcp.birth_date:expression hcp.id:output"},
		{"case", "SELECT CASE WHEN sex = 'F' THEN email END FROM public.hcp", "hcp.email:expression hcp.sex:expression"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts, err := Analyze(tt.sql, cat)
			if err != nil {
				t.Fatal(err)
			}
			if len(sts) != 1 {
				t.Fatalf("%d statements", len(sts))
			}
			if sts[0].Unsure != "" {
				t.Fatalf("unsure: %s", sts[0].Unsure)
			}
			if got := uses(sts[0]); got != tt.want {
				t.Errorf("uses:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// typicalSelect is a 200-character application query.
const typicalSelect = `SELECT h.id, h.name, h.email, h.institution, c.diagnosis_code, c.stage FROM public.hcp h JOIN public.cases c ON c.institution = h.institution WHERE h.department = $1 AND c.start_date >= $2 ORDER BY h.id LIMIT 50`

func BenchmarkAnalyze(b *testing.B) {
	cat := testCatalog()
	b.SetBytes(int64(len(typicalSelect)))
	for b.Loop() {
		if _, err := Analyze(typicalSelect, cat); err != nil {
			b.Fatal(err)
		}
	}
}
