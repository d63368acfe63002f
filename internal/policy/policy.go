// Package policy decides statements: given a role's rules, the data
// classification and what the analysis (sqlscope) found a statement does,
// it allows the statement, allows it with masked results, or refuses it
// naming the column or feature and the rule that decided. It does no I/O.
package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/mask"
	"github.com/sekisho/sekisho/internal/sqlscope"
)

// SQLSTATEs of policy refusals.
const (
	CodeInsufficientPrivilege    = "42501"
	CodeSyntaxError              = "42601"
	CodeFeatureNotSupported      = "0A000"
	CodeProgramLimitExceeded     = "54000"
	CodeCharacterNotInRepertoire = "22021"
)

// Refusal is a statement refused, with what the client is told.
type Refusal struct {
	Code    string
	Reason  string // short machine-readable reason for the audit log
	Message string
	Hint    string
}

// Decision is the gateway's decision on one client message (all its
// statements).
type Decision struct {
	// Refusal refuses the whole message (nil: allowed).
	Refusal *Refusal
	// Masked: the results may hold protected columns the role sees
	// masked; the gateway must see every result's RowDescription and
	// mask by column origin.
	Masked bool
	// Rules are the rules that decided, for policy explain and the audit
	// log (for example "hcp.email: mask: partial_email (protected.email)").
	Rules []string
	// Statements are the analysed statements.
	Statements []*sqlscope.Statement
}

// Policy is one role's rules for one database.
type Policy struct {
	cfg      *config.Config
	role     *config.Role
	roleName string
	database string
}

// New returns the policy of role for database.
func New(cfg *config.Config, roleName, database string) (*Policy, error) {
	r, ok := cfg.Role(roleName)
	if !ok {
		return nil, fmt.Errorf("role %q is not configured", roleName)
	}
	return &Policy{cfg: cfg, role: r, roleName: roleName, database: database}, nil
}

// Restricted reports whether the role masks or denies any protected
// column of the database: then results must be checked column by column.
func (p *Policy) Restricted() bool {
	for i := range p.cfg.Subjects {
		s := &p.cfg.Subjects[i]
		if s.Database != p.database {
			continue
		}
		for col := range s.Columns {
			if r, _ := p.role.ColumnRule(s, col); r.Action != "allow" {
				return true
			}
		}
	}
	return false
}

// unrestricted: the role may do anything the server lets it. Statements
// the analysis is unsure of are then not refused for that reason alone.
func (p *Policy) unrestricted() bool {
	return p.role.AllowsClass("admin") && p.role.AllowsClass("ddl") && p.role.AllowsClass("write") &&
		p.role.AllowsClass("read") && p.role.AllowsClass("copy") && p.role.AllowsClass("session") &&
		p.role.AllowsClass("transaction") && slices.Contains(p.role.Read, "*") && slices.Contains(p.role.Write, "*") &&
		slices.Contains(p.role.Functions, "*") && p.role.AllowsFeature("all") && !p.Restricted()
}

func (p *Policy) contact() string {
	if p.cfg.Contact != "" {
		return p.cfg.Contact
	}
	return "your security team"
}

// AnalysisRefusal turns an analysis failure (parse error, too long,
// invalid UTF-8) into the refusal the client sees.
func AnalysisRefusal(err error) *Refusal {
	var pe *sqlscope.ParseError
	switch {
	case errorsAs(err, &pe):
		return &Refusal{Code: CodeSyntaxError, Reason: "unparsable",
			Message: "sekisho could not parse the statement with the PostgreSQL parser: " + pe.Err.Error(),
			Hint:    "Fix the SQL; the gateway forwards only statements it has parsed and decided."}
	case err == sqlscope.ErrTooLong:
		return &Refusal{Code: CodeProgramLimitExceeded, Reason: "statement_too_long",
			Message: fmt.Sprintf("the statement is longer than the %d bytes sekisho analyses", sqlscope.MaxAnalysedBytes),
			Hint:    "Send smaller statements; load bulk data with COPY FROM STDIN."}
	case err == sqlscope.ErrInvalidUTF8:
		return &Refusal{Code: CodeCharacterNotInRepertoire, Reason: "invalid_utf8",
			Message: "the statement is not valid UTF-8 or holds a NUL byte", Hint: "Send statements in UTF-8 (client_encoding UTF8)."}
	}
	return &Refusal{Code: CodeSyntaxError, Reason: "unanalysable", Message: "sekisho could not analyse the statement",
		Hint: "Rewrite the statement; the gateway forwards only statements it has decided."}
}

// Decide decides a message's statements. One refusal refuses them all.
func (p *Policy) Decide(sts []*sqlscope.Statement) Decision {
	d := Decision{Statements: sts}
	if len(sts) == 0 {
		return d
	}
	for _, st := range sts {
		if r := p.decide(st, &d); r != nil {
			d.Refusal = r
			return d
		}
	}
	return d
}

func (p *Policy) refuse(reason, format string, a ...any) *Refusal {
	return &Refusal{Code: CodeInsufficientPrivilege, Reason: reason, Message: "sekisho refused: " + fmt.Sprintf(format, a...)}
}

func (p *Policy) decide(st *sqlscope.Statement, d *Decision) *Refusal {
	if st.Unsure != "" && !p.unrestricted() {
		return &Refusal{Code: CodeFeatureNotSupported, Reason: "analysis_unsure",
			Message: "sekisho refused a statement it cannot fully analyse: " + st.Unsure,
			Hint:    "Rewrite it in plainer SQL, or ask " + p.contact() + " to run it with an administrative role."}
	}
	class := string(st.Class)
	if !p.role.AllowsClass(class) {
		r := p.refuse("statement_class", "role %s may not run %s statements (%s)", p.roleName, class, st.Command)
		r.Hint = fmt.Sprintf("The role allows: %s. Ask %s if you need more.", listOrNone(p.role.Statements), p.contact())
		return r
	}
	for _, f := range st.Features {
		if f == sqlscope.FeatureListen && !p.Restricted() {
			// Notifications are only a way around masks for a role that
			// has masks.
			continue
		}
		if !p.role.AllowsFeature(string(f)) {
			r := p.refuse("feature", "role %s may not use %s (%s)", p.roleName, featureText(f), f)
			r.Hint = "This is refused for every role that is not explicitly allowed it (features: [" + string(f) + "])."
			if f == sqlscope.FeatureListen {
				r.Hint = "Roles that mask must be allowed it explicitly (features: [listen]); ask " + p.contact() + "."
			}
			return r
		}
	}
	for _, rel := range st.Reads {
		if !p.mayRead(rel) {
			r := p.refuse("table_read", "role %s may not read %s", p.roleName, rel)
			r.Hint = fmt.Sprintf("The role may read: %s.", listOrNone(p.role.Read))
			return r
		}
	}
	for _, rel := range st.Writes {
		if !config.AllowsTable(p.role.Write, rel) {
			r := p.refuse("table_write", "role %s may not write %s", p.roleName, rel)
			r.Hint = fmt.Sprintf("The role may write: %s.", listOrNone(p.role.Write))
			return r
		}
	}
	for _, f := range st.Functions {
		if !p.mayCall(f) {
			r := p.refuse("function", "role %s may not call %s", p.roleName, f)
			if f.Shadowable {
				r.Message += " (a function of that name exists outside pg_catalog, so search_path could pick it)"
			}
			r.Hint = "Use a built-in function, schema-qualified (pg_catalog.lower), or ask " + p.contact() + " to allow it (functions: [...])."
			return r
		}
	}
	for _, u := range st.Uses {
		s := p.cfg.SubjectFor(p.database, u.Table)
		if s == nil {
			continue
		}
		if _, protected := s.Columns[u.Name]; !protected {
			continue
		}
		rule, from := p.role.ColumnRule(s, u.Name)
		col := strings.TrimPrefix(u.Table, "public.") + "." + u.Name
		note := fmt.Sprintf("%s (%s): %s [%s]", col, s.Columns[u.Name], rule, from)
		if !slices.Contains(d.Rules, note) {
			d.Rules = append(d.Rules, note)
		}
		switch rule.Action {
		case "allow":
			continue
		case "deny":
			r := p.refuse("column_denied", "column %s (%s) is denied to role %s (%s)", col, s.Columns[u.Name], p.roleName, from)
			r.Hint = "Leave the column out (list the columns you need instead of *), or ask " + p.contact() + " for a role that allows it."
			return r
		}
		switch u.Context {
		case sqlscope.Output:
			d.Masked = true
		case sqlscope.Filter:
			if !p.role.FilterOnMasked {
				r := p.refuse("masked_filter", "column %s is masked for role %s (%s) and cannot be compared, sorted or grouped by: the answers would reveal its values",
					col, p.roleName, rule)
				r.Hint = "Filter on columns that are not protected, or ask " + p.contact() + " for a role with filter_on_masked."
				return r
			}
		default:
			r := p.refuse("masked_"+strings.NewReplacer(" ", "_", "-", "_").Replace(strings.TrimSuffix(u.Context.String(), " reference")),
				"column %s is masked for role %s (%s) and cannot be used as %s", col, p.roleName, rule, contextText(u.Context))
			r.Hint = "Select the column on its own to receive the masked value; computing with it (functions, casts, operators, aggregates, whole rows, COPY, RETURNING, storing it elsewhere) is refused."
			return r
		}
	}
	if st.RowsFromElsewhere && p.Restricted() {
		d.Masked = true
	}
	return nil
}

func contextText(c sqlscope.Context) string {
	switch c {
	case sqlscope.Expression:
		return "part of an expression (a function argument, cast, operator, aggregate, CASE, set operation, subquery value or RETURNING)"
	case sqlscope.WholeRow:
		return "part of a whole-row value (h, h.*, row_to_json(h))"
	case sqlscope.Copied:
		return "COPY data or stored into another table or view"
	}
	return c.String()
}

func featureText(f sqlscope.Feature) string {
	switch f {
	case sqlscope.FeatureCopyProgram:
		return "COPY with PROGRAM"
	case sqlscope.FeatureCopyFile:
		return "COPY to or from a server file"
	case sqlscope.FeatureSetRole:
		return "SET ROLE or SET SESSION AUTHORIZATION"
	case sqlscope.FeatureAlterSystem:
		return "ALTER SYSTEM"
	case sqlscope.FeatureSecuritySetting:
		return "a security-relevant setting"
	case sqlscope.FeatureDo:
		return "DO blocks"
	case sqlscope.FeatureCreateFunction:
		return "creating functions, languages or extensions"
	case sqlscope.FeatureLoad:
		return "LOAD"
	case sqlscope.FeatureCatalogValues:
		return "catalogs that hold data values (pg_statistic, pg_stats, pg_stat_activity)"
	case sqlscope.FeatureForeignData:
		return "foreign data wrappers, servers and user mappings"
	case sqlscope.FeatureListen:
		return "LISTEN: notifications from other sessions (and their triggers) cannot be masked"
	}
	return string(f)
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// mayRead: a role reads the relations its read list names, and the system
// catalogs (whose value-bearing ones are the catalog_values feature).
func (p *Policy) mayRead(rel string) bool {
	if config.AllowsTable(p.role.Read, rel) {
		return true
	}
	schema, name, qualified := strings.Cut(rel, ".")
	if !qualified {
		name = schema
		schema = ""
	}
	switch schema {
	case "pg_catalog", "information_schema":
		return true
	case "":
		return strings.HasPrefix(name, "pg_") || slices.Contains(informationSchemaViews, name)
	}
	return false
}

var informationSchemaViews = []string{"tables", "columns", "schemata", "views", "routines", "table_constraints", "key_column_usage"}

func (p *Policy) mayCall(f sqlscope.Function) bool {
	if slices.Contains(p.role.Functions, "*") {
		return true
	}
	if f.Schema != "" && slices.Contains(p.role.Functions, f.Schema+"."+f.Name) {
		return true
	}
	if f.Schema == "" && slices.Contains(p.role.Functions, f.Name) {
		return true
	}
	if (f.Schema == "" && !f.Shadowable || f.Schema == "pg_catalog") && SafeFunctions[f.Name] {
		return true
	}
	return false
}

// ResultRule is the rule for a result column by its origin (the table OID
// and column number PostgreSQL reports). A column of a view carries the
// rule of the base column it shows. known is false for an origin not in
// the catalog: the caller refreshes the catalog or refuses.
func (p *Policy) ResultRule(cat sqlscope.Catalog, tableOID uint32, attnum int16) (rule config.Rule, column string, known bool) {
	allow := config.Rule{Action: "allow"}
	if tableOID == 0 {
		return allow, "", true
	}
	rel := cat.RelationByOID(tableOID)
	if rel == nil {
		return allow, "", false
	}
	var cols []sqlscope.Column
	if rel.IsView() {
		carried, plain, err := sqlscope.ViewColumn(cat, rel, int(attnum))
		if err != nil {
			return config.Rule{Action: "deny"}, rel.QualifiedName(), true
		}
		if !plain {
			// A computed view column: protected if computed from
			// protected columns.
			for _, c := range carried {
				if r, _ := p.columnRule(c); r.Action != "allow" {
					return config.Rule{Action: "deny"}, c.String(), true
				}
			}
			return allow, "", true
		}
		cols = carried
	} else if int(attnum) >= 1 && int(attnum) <= len(rel.Columns) {
		cols = []sqlscope.Column{{Rel: rel.OID, Table: rel.QualifiedName(), Name: rel.Columns[attnum-1], Kin: rel.KinList()}}
	}
	rule = allow
	for _, c := range cols {
		r, _ := p.columnRule(c)
		if stricter(r, rule) {
			rule, column = r, c.String()
		}
	}
	return rule, column, true
}

// columnRule is the role's rule for a column: the strictest of the
// classifications of its table and of the tables related to it by
// inheritance or partitioning that classify a column of that name. A
// partition of a subject table holds the same people's data, and a scan
// of a parent returns its children's rows.
func (p *Policy) columnRule(c sqlscope.Column) (config.Rule, string) {
	rule, where, found := config.Rule{Action: "allow"}, "", false
	for _, t := range append([]string{c.Table}, c.KinTables()...) {
		s := p.cfg.SubjectFor(p.database, t)
		if s == nil {
			continue
		}
		if _, ok := s.Columns[c.Name]; ok {
			if r, w := p.role.ColumnRule(s, c.Name); !found || stricter(r, rule) {
				rule, where, found = r, w, true
			}
		}
	}
	return rule, where
}

func stricter(a, b config.Rule) bool {
	rank := map[string]int{"allow": 0, "mask": 1, "deny": 2}
	return rank[a.Action] > rank[b.Action]
}

// MaskFunction is the masking function for a rule: deny (which the
// analysis refuses before any row) masks to NULL as a last line.
func MaskFunction(r config.Rule) mask.Function {
	if r.Action == "mask" {
		return r.Mask
	}
	return mask.Null
}
