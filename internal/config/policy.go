package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sekisho/sekisho/internal/mask"
)

// Subject is a subject table of the data classification: whose rows are
// about people, how a person is identified, and which columns hold
// personal data of which category.
type Subject struct {
	// Database is the client-facing database name (an upstream's).
	Database string `yaml:"database"`
	// Table is schema.name (a bare name means public.name).
	Table string `yaml:"table"`
	// Key is the column that identifies the data subject.
	Key string `yaml:"key"`
	// Columns maps each protected column to its category.
	Columns map[string]string `yaml:"columns"`
}

// Categories are the kinds of personal data a breach report lists.
// Special-care ones (要配慮個人情報) are marked.
var Categories = map[string]bool{
	"name": false, "date_of_birth": false, "sex": false, "email": false, "phone": false,
	"address": false, "institution": false, "occupation": false, "identifier": false,
	"medical_history": true, "diagnosis": true, "treatment": true, "genetic": true,
}

// QualifiedTable is the subject table as schema.name.
func (s *Subject) QualifiedTable() string {
	if strings.Contains(s.Table, ".") {
		return s.Table
	}
	return "public." + s.Table
}

// Rule is what a role gets of a protected column: the value, a masked
// value, or nothing.
type Rule struct {
	Action string        // "allow", "mask" or "deny"
	Mask   mask.Function // for "mask"
}

// String renders the rule as it is written in the config.
func (r Rule) String() string {
	if r.Action == "mask" {
		return "mask: " + string(r.Mask)
	}
	return r.Action
}

// UnmarshalYAML reads "allow", "deny", "mask: partial_email" (a string)
// or {mask: partial_email}.
func (r *Rule) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		s := strings.TrimSpace(n.Value)
		switch {
		case s == "allow" || s == "deny":
			r.Action = s
			return nil
		case strings.HasPrefix(s, "mask"):
			f := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(s, "mask"), ":"))
			r.Action, r.Mask = "mask", mask.Function(f)
			return nil
		}
	case yaml.MappingNode:
		var m map[string]string
		if err := n.Decode(&m); err != nil {
			return err
		}
		if f, ok := m["mask"]; ok && len(m) == 1 {
			r.Action, r.Mask = "mask", mask.Function(f)
			return nil
		}
	}
	return fmt.Errorf("line %d: a column rule is allow, deny or mask: FUNCTION", n.Line)
}

// Statement classes a role may be allowed.
var StatementClasses = []string{"read", "write", "ddl", "admin", "copy", "transaction", "session"}

// Features are dangerous capabilities a role may be allowed by name.
var Features = []string{"copy_program", "copy_file", "set_role", "alter_system", "security_setting", "do",
	"create_function", "load", "catalog_values", "foreign_data", "listen"}

func (c *Config) compileSubjects() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	seen := map[string]bool{}
	for i := range c.Subjects {
		s := &c.Subjects[i]
		where := fmt.Sprintf("subjects[%d]", i)
		if s.Table == "" {
			bad("%s.table: name the subject table (schema.table)", where)
			continue
		}
		where = fmt.Sprintf("subjects[%s]", s.Table)
		if s.Database == "" {
			bad("%s.database: name the database it is in (an upstream's database)", where)
		} else if _, ok := c.Upstream(s.Database); !ok {
			bad("%s.database: %q is not an upstream's database", where, s.Database)
		}
		if s.Key == "" {
			bad("%s.key: a subject table needs the column that identifies the person (for example id)", where)
		}
		if len(s.Columns) == 0 {
			bad("%s.columns: list its protected columns and their categories", where)
		}
		for col, cat := range s.Columns {
			if _, ok := Categories[cat]; !ok {
				bad("%s.columns.%s: %q is not a category (use one of %s)", where, col, cat, strings.Join(categoryNames(), ", "))
			}
		}
		k := s.Database + "/" + s.QualifiedTable()
		if seen[k] {
			bad("%s: the table is classified twice", where)
		}
		seen[k] = true
	}
	return errs
}

func categoryNames() []string {
	out := make([]string, 0, len(Categories))
	for k := range Categories {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// compilePolicy checks a role's data policy.
func (r *Role) compilePolicy(name string, c *Config) []error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("roles.%s: "+format, append([]any{name}, a...)...))
	}
	for _, s := range r.Statements {
		if s != "all" && !slices.Contains(StatementClasses, s) {
			bad("statements: %q is not a statement class (use %s, or all)", s, strings.Join(StatementClasses, ", "))
		}
	}
	for _, f := range r.Features {
		if f != "all" && !slices.Contains(Features, f) {
			bad("features: %q is not a feature (use %s, or all)", f, strings.Join(Features, ", "))
		}
	}
	for key, rule := range r.Protected {
		switch rule.Action {
		case "allow", "deny":
		case "mask":
			if !mask.Known(rule.Mask) {
				bad("protected.%s: mask %q is not a masking function (use %s)", key, rule.Mask, maskNames())
			}
		default:
			bad("protected.%s: a rule is allow, deny or mask: FUNCTION", key)
		}
		if _, ok := Categories[key]; ok {
			continue
		}
		if !c.classifiedColumn(key) {
			bad("protected.%s: neither a category nor a classified column (table.column of a subject table)", key)
		}
	}
	return errs
}

func maskNames() string {
	var out []string
	for _, f := range mask.Functions {
		out = append(out, string(f))
	}
	return strings.Join(out, ", ")
}

// classifiedColumn reports whether key (table.column or
// schema.table.column) is a protected column of some subject table.
func (c *Config) classifiedColumn(key string) bool {
	for i := range c.Subjects {
		s := &c.Subjects[i]
		for col := range s.Columns {
			if key == s.QualifiedTable()+"."+col || key == s.Table+"."+col ||
				strings.TrimPrefix(s.QualifiedTable(), "public.")+"."+col == key {
				return true
			}
		}
	}
	return false
}

// ColumnRule is the rule role r applies to a protected column of subject
// s: a rule for the column itself first, then for its category; a
// protected column the role has no rule for is denied.
func (r *Role) ColumnRule(s *Subject, column string) (Rule, string) {
	for _, key := range []string{s.QualifiedTable() + "." + column, strings.TrimPrefix(s.QualifiedTable(), "public.") + "." + column} {
		if rule, ok := r.Protected[key]; ok {
			return rule, "protected." + key
		}
	}
	cat := s.Columns[column]
	if rule, ok := r.Protected[cat]; ok {
		return rule, "protected." + cat
	}
	return Rule{Action: "deny"}, "no rule for category " + cat + " (denied)"
}

// AllowsClass reports whether the role may run statements of a class.
func (r *Role) AllowsClass(class string) bool {
	return slices.Contains(r.Statements, class) || slices.Contains(r.Statements, "all")
}

// AllowsFeature reports whether the role may use a dangerous feature.
func (r *Role) AllowsFeature(f string) bool {
	return slices.Contains(r.Features, f) || slices.Contains(r.Features, "all")
}

// AllowsTable reports whether the list (a role's read or write list)
// covers the relation schema.name: "*" is every relation, "schema.*"
// every one in a schema, a bare name a relation in any schema.
func AllowsTable(list []string, qualified string) bool {
	schema, name, ok := strings.Cut(qualified, ".")
	if !ok {
		schema, name = "", qualified
	}
	for _, e := range list {
		switch {
		case e == "*", e == qualified, e == name && !strings.Contains(e, "."):
			return true
		case strings.HasSuffix(e, ".*") && schema != "" && strings.TrimSuffix(e, ".*") == schema:
			return true
		}
	}
	return false
}

// SubjectFor finds the subject table schema.name of a database.
func (c *Config) SubjectFor(database, qualified string) *Subject {
	for i := range c.Subjects {
		s := &c.Subjects[i]
		if s.Database == database && s.QualifiedTable() == qualified {
			return s
		}
	}
	return nil
}
