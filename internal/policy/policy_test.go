package policy

import (
	"testing"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/sqlscope"
)

const testConfig = `
state_dir: state
contact: security@example.jp
roles:
  admin: {networks: [127.0.0.1], databases: ["*"], statements: [all], read: ["*"], write: ["*"], functions: ["*"], features: [all],
          protected: {name: allow, date_of_birth: allow, email: allow, address: allow}}
  analyst:
    networks: [127.0.0.1]
    databases: [pharma]
    statements: [read, session, transaction]
    read: [public.hcp, cases]
    protected: {name: {mask: pseudonym}, date_of_birth: {mask: year_only}, email: {mask: partial_email}, hcp.institution_address: deny}
  filterer:
    networks: [127.0.0.1]
    databases: [pharma]
    statements: [read]
    read: ["*"]
    filter_on_masked: true
    protected: {email: {mask: partial_email}}
subjects:
  - database: pharma
    table: hcp
    key: id
    columns: {name: name, birth_date: date_of_birth, email: email, institution_address: address}
upstreams:
  - {database: pharma, host: 127.0.0.1, user: gw, password_env: PW}
`

func testCatalog() *sqlscope.Snapshot {
	return sqlscope.NewSnapshot([]*sqlscope.Relation{
		{OID: 1, Schema: "public", Name: "hcp", Kind: 'r', Columns: []string{"id", "name", "birth_date", "email", "institution_address", "title"}},
		{OID: 2, Schema: "public", Name: "cases", Kind: 'r', Columns: []string{"id", "diagnosis_code"}},
		{OID: 3, Schema: "public", Name: "secret", Kind: 'r', Columns: []string{"id"}},
		{OID: 4, Schema: "public", Name: "v", Kind: 'v', Columns: []string{"id", "email"}, ViewQuery: "SELECT hcp.id, hcp.email FROM hcp"},
	}, nil)
}

func TestDecide(t *testing.T) {
	cfg, err := config.Parse([]byte(testConfig), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cat := testCatalog()
	tests := []struct {
		name, role, sql string
		reason          string // "" allowed
		masked          bool
	}{
		{"admin reads everything", "admin", "SELECT lower(email), row_to_json(h) FROM hcp h", "", false},
		{"admin is unsure but unrestricted", "admin", "MERGE INTO hcp USING cases ON true WHEN MATCHED THEN DELETE", "", false},
		{"analyst plain masked", "analyst", "SELECT id, email, birth_date FROM hcp", "", true},
		{"analyst star hits denied column", "analyst", "SELECT * FROM hcp", "column_denied", false},
		{"analyst explicit columns", "analyst", "SELECT id, name, title FROM hcp", "", true},
		{"analyst unprotected", "analyst", "SELECT id, diagnosis_code FROM cases", "", false},
		{"analyst expression", "analyst", "SELECT upper(name) FROM hcp", "masked_expression", false},
		{"analyst whole row", "analyst", "SELECT h FROM hcp h", "masked_whole_row", false},
		{"analyst filter", "analyst", "SELECT id FROM hcp WHERE email = $1", "masked_filter", false},
		{"analyst copy", "analyst", "COPY (SELECT email FROM hcp) TO STDOUT", "statement_class", false},
		{"analyst write", "analyst", "DELETE FROM cases", "statement_class", false},
		{"analyst other table", "analyst", "SELECT id FROM secret", "table_read", false},
		{"analyst catalog", "analyst", "SELECT relname FROM pg_class", "", false},
		{"analyst statistics", "analyst", "SELECT * FROM pg_stats", "feature", false},
		{"analyst unsafe function", "analyst", "SELECT pg_read_file('x')", "function", false},
		{"analyst set role", "analyst", "SET ROLE postgres", "feature", false},
		{"analyst search_path is fine", "analyst", "SET search_path = public", "", false},
		{"analyst unsure", "analyst", "MERGE INTO hcp USING cases ON true WHEN MATCHED THEN DELETE", "analysis_unsure", false},
		{"analyst one refusal refuses all", "analyst", "SELECT 1; SELECT lower(email) FROM hcp", "masked_expression", false},
		{"analyst view masked", "analyst", "SELECT email FROM v", "table_read", false},
		{"analyst fetch is masked", "analyst", "FETCH 10 FROM c", "", true},
		{"analyst may not listen", "analyst", "LISTEN hcp_changes", "feature", false},
		{"admin may listen", "admin", "LISTEN hcp_changes", "", false},
		{"filterer may filter", "filterer", "SELECT id FROM hcp WHERE email LIKE 'a%' ORDER BY email", "", false},
		{"filterer may not transform", "filterer", "SELECT id FROM hcp WHERE lower(email) = 'a'", "masked_expression", false},
		{"filterer reads view masked", "filterer", "SELECT email FROM v", "", true},
		{"no rule is deny", "filterer", "SELECT name FROM hcp", "column_denied", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(cfg, tt.role, "pharma")
			if err != nil {
				t.Fatal(err)
			}
			sts, err := sqlscope.Analyze(tt.sql, cat)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(sts)
			got := ""
			if d.Refusal != nil {
				got = d.Refusal.Reason
				if d.Refusal.Hint == "" || d.Refusal.Code == "" {
					t.Errorf("refusal without code or hint: %+v", d.Refusal)
				}
			}
			if got != tt.reason {
				t.Fatalf("decision %q, want %q (%+v)", got, tt.reason, d.Refusal)
			}
			if d.Refusal == nil && d.Masked != tt.masked {
				t.Fatalf("masked %v, want %v", d.Masked, tt.masked)
			}
		})
	}
}

func TestResultRule(t *testing.T) {
	cfg, err := config.Parse([]byte(testConfig), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := New(cfg, "analyst", "pharma")
	cat := testCatalog()
	for _, tt := range []struct {
		oid    uint32
		attnum int16
		want   string
		known  bool
	}{
		{1, 4, "mask: partial_email", true},
		{1, 3, "mask: year_only", true},
		{1, 5, "deny", true},
		{1, 6, "allow", true},
		{4, 2, "mask: partial_email", true}, // the view's email column
		{0, 0, "allow", true},               // no origin: an expression
		{99, 1, "allow", false},             // unknown relation
	} {
		r, _, known := p.ResultRule(cat, tt.oid, tt.attnum)
		if r.String() != tt.want || known != tt.known {
			t.Errorf("origin %d/%d: %s known=%v, want %s known=%v", tt.oid, tt.attnum, r, known, tt.want, tt.known)
		}
	}
}
