package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/policy"
	"github.com/sekisho/sekisho/internal/proxy"
	"github.com/sekisho/sekisho/internal/sqlscope"
)

// cmdPolicy checks a config's data policy against the live schema, or
// explains how a role's statement is decided.
func cmdPolicy(args []string) error {
	if len(args) == 0 {
		return usageError{"policy: say check or explain"}
	}
	switch args[0] {
	case "check":
		return cmdPolicyCheck(args[1:])
	case "explain":
		return cmdPolicyExplain(args[1:])
	}
	return usageError{fmt.Sprintf("policy: unknown subcommand %q (check, explain)", args[0])}
}

func loadCatalogs(cfg *config.Config, dbs []string) (map[string]*sqlscope.Snapshot, error) {
	out := map[string]*sqlscope.Snapshot{}
	for _, db := range dbs {
		u, ok := cfg.Upstream(db)
		if !ok {
			return nil, usageError{fmt.Sprintf("%q is not an upstream's database (have: %s)", db, upstreamNames(cfg))}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		cat, err := proxy.LoadCatalog(ctx, cfg, u)
		cancel()
		if err != nil {
			return nil, hintError{fmt.Errorf("database %s: %w", db, err), "policy check and explain read the live schema with the gateway's upstream credential: is the upstream reachable?"}
		}
		out[db] = cat
	}
	return out, nil
}

func upstreamNames(cfg *config.Config) string {
	var n []string
	for _, u := range cfg.Upstreams {
		n = append(n, u.Database)
	}
	return strings.Join(n, ", ")
}

func cmdPolicyCheck(args []string) error {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return hintError{err, "fix the config; every problem found is listed above"}
	}
	var dbs []string
	for _, u := range cfg.Upstreams {
		dbs = append(dbs, u.Database)
	}
	cats, err := loadCatalogs(cfg, dbs)
	if err != nil {
		return err
	}
	problems, warnings := policyProblems(cfg, cats)
	for _, w := range warnings {
		fmt.Printf("warning: %s\n", w)
	}
	for _, p := range problems {
		fmt.Printf("error: %s\n", p)
	}
	if len(problems) > 0 {
		return hintError{fmt.Errorf("policy check: %d errors, %d warnings", len(problems), len(warnings)), "fix the errors above; the gateway refuses what the classification names but the database lacks"}
	}
	fmt.Printf("policy check: ok (%d roles, %d subject tables, %d warnings)\n", len(cfg.Roles), len(cfg.Subjects), len(warnings))
	return nil
}

// policyProblems compares the classification and roles with the schema.
func policyProblems(cfg *config.Config, cats map[string]*sqlscope.Snapshot) (problems, warnings []string) {
	classified := map[string]bool{} // database/schema.table.column
	for i := range cfg.Subjects {
		s := &cfg.Subjects[i]
		cat := cats[s.Database]
		schema, name, _ := strings.Cut(s.QualifiedTable(), ".")
		rels := cat.Relations(schema, name)
		if len(rels) == 0 {
			problems = append(problems, fmt.Sprintf("subjects: table %s does not exist in database %s", s.QualifiedTable(), s.Database))
			continue
		}
		r := rels[0]
		if r.Kind != 'r' && r.Kind != 'p' {
			problems = append(problems, fmt.Sprintf("subjects: %s in %s is not a table (relkind %c); classify the table it reads", s.QualifiedTable(), s.Database, r.Kind))
		}
		if !slices.Contains(r.Columns, s.Key) {
			problems = append(problems, fmt.Sprintf("subjects: %s has no key column %q", s.QualifiedTable(), s.Key))
		}
		for _, col := range sortedKeys(s.Columns) {
			classified[s.Database+"/"+s.QualifiedTable()+"."+col] = true
			if !slices.Contains(r.Columns, col) {
				problems = append(problems, fmt.Sprintf("subjects: %s has no column %q", s.QualifiedTable(), col))
			}
		}
	}
	// Columns that look personal but are not classified anywhere.
	personal := map[string]bool{}
	for i := range cfg.Subjects {
		for col := range cfg.Subjects[i].Columns {
			personal[col] = true
		}
	}
	for _, db := range sortedKeys(cats) {
		for _, r := range relationsOf(cats[db]) {
			for _, c := range r.Columns {
				if c != "" && personal[c] && !classified[db+"/"+r.QualifiedName()+"."+c] && !r.IsView() {
					warnings = append(warnings, fmt.Sprintf("%s: %s.%s is named like a protected column but is not classified (it is not masked)", db, r.QualifiedName(), c))
				}
			}
		}
	}
	for _, name := range cfg.RoleNames() {
		role, _ := cfg.Role(name)
		if len(role.Statements) == 0 {
			warnings = append(warnings, fmt.Sprintf("roles.%s: no statements are allowed (statements: [read, ...]); its users can connect and do nothing", name))
		}
		for _, list := range [][]string{role.Read, role.Write} {
			for _, t := range list {
				if t == "*" || strings.HasSuffix(t, ".*") {
					continue
				}
				schema, tbl, ok := strings.Cut(t, ".")
				if !ok {
					schema, tbl = "", t
				}
				found := false
				for _, db := range sortedKeys(cats) {
					if role.AllowsDatabase(db) && len(cats[db].Relations(schema, tbl)) > 0 {
						found = true
					}
				}
				if !found {
					warnings = append(warnings, fmt.Sprintf("roles.%s: %s is not a relation in any of its databases", name, t))
				}
			}
		}
		for key, rule := range role.Protected {
			if _, isCat := config.Categories[key]; !isCat {
				continue
			}
			for i := range cfg.Subjects {
				s := &cfg.Subjects[i]
				for col, cat := range s.Columns {
					if cat != key {
						continue
					}
					if r, from := role.ColumnRule(s, col); r != rule {
						warnings = append(warnings, fmt.Sprintf("roles.%s: %s.%s is %s by %s, not %s as its category says", name, s.Table, col, r, from, rule))
					}
				}
			}
		}
		if role.FilterOnMasked {
			warnings = append(warnings, fmt.Sprintf("roles.%s: filter_on_masked lets it compare masked columns (answers leak values by oracle)", name))
		}
		if restricts(cfg, name) {
			if slices.Contains(role.Functions, "*") {
				warnings = append(warnings, fmt.Sprintf(`roles.%s: masks or denies protected columns but allows every function (functions: ["*"]); a function the gateway cannot see into (dblink, query_to_xml, one of your own) can return what it masks: list the functions the role needs`, name))
			}
			for _, f := range maskBypassFeatures {
				if role.AllowsFeature(f) {
					warnings = append(warnings, fmt.Sprintf("roles.%s: masks or denies protected columns but allows the feature %s, which reads or returns data the gateway cannot see: allow it only if the role cannot work without it", name, f))
				}
			}
		}
	}
	sort.Strings(warnings)
	return problems, warnings
}

// maskBypassFeatures are the features that let a statement reach data
// by a path the analysis cannot follow: code run in the server (DO,
// functions it creates, libraries it loads, programs), files, foreign
// tables, and catalogs that hold copies of values.
var maskBypassFeatures = []string{"do", "create_function", "load", "copy_program", "copy_file", "foreign_data", "catalog_values"}

// restricts reports whether the role masks or denies a protected column
// in any of the gateway's databases.
func restricts(cfg *config.Config, role string) bool {
	for _, u := range cfg.Upstreams {
		if p, err := policy.New(cfg, role, u.Database); err == nil && p.Restricted() {
			return true
		}
	}
	return false
}

func relationsOf(s *sqlscope.Snapshot) []*sqlscope.Relation {
	var out []*sqlscope.Relation
	seen := map[uint32]bool{}
	for _, name := range s.Names() {
		for _, r := range s.Relations("", name) {
			if !seen[r.OID] {
				seen[r.OID] = true
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].QualifiedName() < out[j].QualifiedName() })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func cmdPolicyExplain(args []string) error {
	fs := flag.NewFlagSet("policy explain", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	role := fs.String("role", "", "the role whose decision to show")
	db := fs.String("database", "", "the database (default: the first upstream's)")
	sql := fs.String("sql", "", "the statement(s)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *role == "" || *sql == "" {
		return usageError{"policy explain: --role and --sql are required"}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return hintError{err, "pass the gateway's config with --config FILE"}
	}
	if *db == "" {
		*db = cfg.Upstreams[0].Database
	}
	pol, err := policy.New(cfg, *role, *db)
	if err != nil {
		return hintError{err, "roles: " + strings.Join(cfg.RoleNames(), ", ")}
	}
	cats, err := loadCatalogs(cfg, []string{*db})
	if err != nil {
		return err
	}
	w := os.Stdout
	sts, err := sqlscope.Analyze(*sql, cats[*db])
	if err != nil {
		r := policy.AnalysisRefusal(err)
		fmt.Fprintf(w, "decision: refused %s: %s\nhint: %s\n", r.Code, r.Message, r.Hint)
		return nil
	}
	d := pol.Decide(sts)
	switch {
	case d.Refusal != nil:
		fmt.Fprintf(w, "decision: refused %s (%s): %s\nhint: %s\n", d.Refusal.Code, d.Refusal.Reason, d.Refusal.Message, d.Refusal.Hint)
	case d.Masked:
		fmt.Fprintln(w, "decision: allowed; protected columns in the results are masked")
	default:
		fmt.Fprintln(w, "decision: allowed")
	}
	for i, st := range sts {
		fmt.Fprintf(w, "statement %d: %s (class %s)\n", i+1, st.Command, st.Class)
		if len(st.Reads) > 0 {
			fmt.Fprintf(w, "  reads: %s\n", strings.Join(dedup(st.Reads), ", "))
		}
		if len(st.Writes) > 0 {
			fmt.Fprintf(w, "  writes: %s\n", strings.Join(dedup(st.Writes), ", "))
		}
		for _, u := range st.Uses {
			s := cfg.SubjectFor(*db, u.Table)
			rule := "not protected"
			if s != nil {
				if cat, ok := s.Columns[u.Name]; ok {
					r, from := mustRole(cfg, *role).ColumnRule(s, u.Name)
					rule = fmt.Sprintf("%s: %s [%s]", cat, r, from)
				}
			}
			fmt.Fprintf(w, "  column %-32s %-20s %s\n", u.Column, u.Context, rule)
		}
		if len(st.Functions) > 0 {
			var fns []string
			for _, f := range st.Functions {
				fns = append(fns, f.String())
			}
			fmt.Fprintf(w, "  functions: %s\n", strings.Join(fns, ", "))
		}
		if len(st.Features) > 0 {
			var fs []string
			for _, f := range st.Features {
				fs = append(fs, string(f))
			}
			fmt.Fprintf(w, "  features: %s\n", strings.Join(fs, ", "))
		}
		if st.Unsure != "" {
			fmt.Fprintf(w, "  unsure: %s\n", st.Unsure)
		}
	}
	return nil
}

func mustRole(cfg *config.Config, name string) *config.Role {
	r, _ := cfg.Role(name)
	return r
}

func dedup(xs []string) []string {
	var out []string
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
