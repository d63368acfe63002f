package sqlscope

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Context says how a statement uses a column's values. The analysis is
// conservative: when it cannot show a use is one of the milder contexts,
// it reports Expression.
type Context uint8

const (
	// Output: the value is returned to the client unchanged, as a column
	// whose origin (table OID and column number) PostgreSQL reports in the
	// RowDescription, so the gateway can mask it on the way out.
	Output Context = iota + 1
	// Filter: the value is compared (WHERE, JOIN ON, HAVING, IN) or sorted
	// or grouped by. It does not reach the client, but its answers leak by
	// oracle.
	Filter
	// Expression: the value is transformed, cast, aggregated, passed to a
	// function, combined by a set operation, or returned where PostgreSQL
	// does not report its origin (RETURNING, sublinks).
	Expression
	// WholeRow: the whole row is used as one value (h, h.*::text,
	// row_to_json(h)).
	WholeRow
	// Copied: the value leaves through COPY or is stored elsewhere
	// (INSERT … SELECT, CREATE TABLE AS, a view's definition).
	Copied
)

func (c Context) String() string {
	switch c {
	case Output:
		return "output"
	case Filter:
		return "filter"
	case Expression:
		return "expression"
	case WholeRow:
		return "whole-row reference"
	case Copied:
		return "copy"
	}
	return "unknown"
}

// Class is a statement class that roles allow or refuse.
type Class string

const (
	ClassRead        Class = "read"
	ClassWrite       Class = "write"
	ClassDDL         Class = "ddl"
	ClassAdmin       Class = "admin"
	ClassCopy        Class = "copy"
	ClassTransaction Class = "transaction"
	ClassSession     Class = "session"
)

// Feature is a dangerous capability a statement uses; roles allow them by
// name.
type Feature string

const (
	FeatureCopyProgram     Feature = "copy_program"     // COPY … PROGRAM
	FeatureCopyFile        Feature = "copy_file"        // COPY to or from a server file
	FeatureSetRole         Feature = "set_role"         // SET ROLE, SET SESSION AUTHORIZATION
	FeatureAlterSystem     Feature = "alter_system"     // ALTER SYSTEM
	FeatureSecuritySetting Feature = "security_setting" // SET of a security-relevant setting
	FeatureDo              Feature = "do"               // DO blocks
	FeatureCreateFunction  Feature = "create_function"  // CREATE FUNCTION/PROCEDURE/LANGUAGE
	FeatureLoad            Feature = "load"             // LOAD a shared library
	FeatureCatalogValues   Feature = "catalog_values"   // catalogs that hold data values (pg_statistic, pg_stats)
	FeatureForeignData     Feature = "foreign_data"     // foreign servers, user mappings, IMPORT FOREIGN SCHEMA
	// FeatureListen: LISTEN. Notifications carry whatever other sessions
	// (and their triggers) put in them, which no mask sees.
	FeatureListen Feature = "listen"
)

// Column is a base table column.
type Column struct {
	Rel   uint32 // the table's OID (0: not in the catalog)
	Table string // schema.name
	Name  string
	// Kin are the tables Table inherits from or is a partition of, and
	// those that inherit from it or are its partitions (schema.name,
	// NUL-separated so Column stays comparable): the column carries
	// their classification too.
	Kin string
}

// KinTables splits Kin.
func (c Column) KinTables() []string {
	if c.Kin == "" {
		return nil
	}
	return strings.Split(c.Kin, "\x00")
}

func (c Column) String() string { return c.Table + "." + c.Name }

// Use is one use of a column by a statement.
type Use struct {
	Column
	Context Context
}

// Function is a function a statement calls.
type Function struct {
	Schema string // as written ("" when unqualified)
	Name   string
	// Shadowable: unqualified, and a function of that name exists outside
	// pg_catalog, so search_path decides which one runs.
	Shadowable bool
}

func (f Function) String() string {
	if f.Schema != "" {
		return f.Schema + "." + f.Name
	}
	return f.Name
}

// ResultColumn is one column of a statement's result.
type ResultColumn struct {
	Name string
	// Carries are the base columns whose value this column is, unchanged
	// (more than one when the name could mean several tables).
	Carries []Column
}

// Statement is what one SQL statement does, as far as the gateway's
// decisions are concerned.
type Statement struct {
	Command   string // "SELECT", "COPY", "CREATE TABLE", … for messages
	Class     Class
	Reads     []string // relations read (schema.name, or the name as written when unknown)
	Writes    []string
	Uses      []Use
	Functions []Function
	Features  []Feature
	// Outputs are the result columns of a row-returning statement, when
	// the analysis knows them; OutputsKnown is false when it does not
	// (FETCH, EXECUTE, a relation missing from the catalog).
	Outputs      []ResultColumn
	OutputsKnown bool
	// RowsFromElsewhere: rows come from a statement decided earlier
	// (FETCH from a cursor, EXECUTE of a prepared statement).
	RowsFromElsewhere bool
	// Unsure is set when the analysis could not decide what the statement
	// touches; a gateway that enforces a policy refuses it.
	Unsure string
	// Text is the statement's own text within the message.
	Text string
	// Positional: a number in the statement names an output column
	// (ORDER BY 2, GROUP BY 1), so statements differing only in numbers
	// may be decided differently.
	Positional bool
	// Forgets: prepared statements and portals the statement drops or
	// defines. SQL and the extended protocol share their names, so after
	// it runs the gateway no longer knows what those names hold.
	Forgets Forget
}

// Forget names prepared statements and portals (cursors) whose contents
// a statement changes: PREPARE and DEALLOCATE, DECLARE and CLOSE, DISCARD
// ALL.
type Forget struct {
	Statements    []string
	AllStatements bool
	Portals       []string
	AllPortals    bool
}

// Any reports whether f forgets anything.
func (f Forget) Any() bool {
	return f.AllStatements || f.AllPortals || len(f.Statements) > 0 || len(f.Portals) > 0
}

// MaxAnalysedBytes bounds the SQL text the gateway will analyse; longer
// text is refused before the parser sees it.
const MaxAnalysedBytes = 2 << 20

// ErrTooLong and ErrInvalidUTF8 are returned for text the gateway does not
// parse at all.
var (
	ErrTooLong     = fmt.Errorf("statement longer than %d bytes", MaxAnalysedBytes)
	ErrInvalidUTF8 = errors.New("statement is not valid UTF-8 (or holds a NUL byte)")
)

// ParseError is SQL the PostgreSQL parser rejects.
type ParseError struct{ Err error }

func (e *ParseError) Error() string { return "parse: " + e.Err.Error() }
func (e *ParseError) Unwrap() error { return e.Err }

// Analyze parses sql with the PostgreSQL parser and analyses each of its
// statements against cat.
func Analyze(sql string, cat Catalog) ([]*Statement, error) {
	if len(sql) > MaxAnalysedBytes {
		return nil, ErrTooLong
	}
	if !utf8.ValidString(sql) || strings.IndexByte(sql, 0) >= 0 {
		// The parser reads C strings: text after a NUL would not be seen.
		return nil, ErrInvalidUTF8
	}
	tree, err := parseTree(sql)
	if err != nil {
		return nil, &ParseError{Err: err}
	}
	out := make([]*Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		a := &analyzer{cat: cat, st: &Statement{}, record: true}
		a.statement(raw.Stmt, true)
		start, end := int(raw.StmtLocation), int(raw.StmtLocation+raw.StmtLen)
		if raw.StmtLen == 0 {
			end = len(sql)
		}
		if start >= 0 && start <= end && end <= len(sql) {
			a.st.Text = strings.TrimSpace(sql[start:end])
		}
		a.st.Uses = dedupUses(a.st.Uses)
		out = append(out, a.st)
	}
	return out, nil
}

// maxDepth bounds the analysis's recursion (nested subqueries, views on
// views); deeper statements are refused as unsure rather than risk the
// gateway's stack.
const maxDepth = 200

type analyzer struct {
	cat    Catalog
	st     *Statement
	record bool // false while analysing a view definition: its uses are the view owner's
	depth  int
}

func (a *analyzer) unsure(format string, args ...any) {
	if a.st.Unsure == "" {
		a.st.Unsure = fmt.Sprintf(format, args...)
	}
}

func (a *analyzer) feature(f Feature) {
	if !slices.Contains(a.st.Features, f) {
		a.st.Features = append(a.st.Features, f)
	}
}

func (a *analyzer) setClass(c Class, command string) {
	if a.st.Class == "" {
		a.st.Class, a.st.Command = c, command
	}
}

// lineage is where a value comes from.
type lineage struct {
	cols  []Column
	plain bool // the value is one of cols, unchanged, and PostgreSQL keeps its origin
}

func (l lineage) derived() lineage { return lineage{cols: l.cols} }

func union(ls ...lineage) lineage {
	var out lineage
	for _, l := range ls {
		for _, c := range l.cols {
			if !slices.Contains(out.cols, c) {
				out.cols = append(out.cols, c)
			}
		}
	}
	return out
}

// consume records that the values of l are used in ctx. A value that is
// no longer a plain column (computed from protected columns) counts as an
// expression of them wherever it goes.
func (a *analyzer) consume(l lineage, ctx Context) {
	if !a.record {
		return
	}
	if !l.plain && ctx != WholeRow {
		ctx = Expression
	}
	for _, c := range l.cols {
		a.st.Uses = append(a.st.Uses, Use{Column: c, Context: ctx})
	}
}

// srcCol is a column a FROM item provides.
type srcCol struct {
	name string
	lin  lineage
}

// source is one FROM item: a table, view, subquery, CTE or function.
type source struct {
	alias    string // the name its columns are qualified with
	schema   string // for a relation named without an alias
	cols     []srcCol
	complete bool // cols lists every column the item has
}

func (s *source) col(name string) (lineage, bool) {
	var out lineage
	found := false
	for _, c := range s.cols {
		if c.name == name {
			if !found {
				out = c.lin
			} else {
				out = union(out, c.lin)
			}
			found = true
		}
	}
	return out, found
}

func (s *source) all() lineage {
	ls := make([]lineage, len(s.cols))
	for i, c := range s.cols {
		ls[i] = c.lin
	}
	return union(ls...)
}

// scope is the FROM items visible at one query level, and the levels
// around it (for correlated subqueries and LATERAL).
type scope struct {
	parent  *scope
	sources []*source
	ctes    map[string]*source
}

func (sc *scope) cte(name string) *source {
	for s := sc; s != nil; s = s.parent {
		if c, ok := s.ctes[name]; ok {
			return c
		}
	}
	return nil
}

// statement analyses one statement; top says whether its rows go to the
// client.
func (a *analyzer) statement(n *pg_query.Node, top bool) {
	a.depth++
	defer func() { a.depth-- }()
	if a.depth > maxDepth {
		a.unsure("the statement nests deeper than %d levels", maxDepth)
		return
	}
	switch x := n.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		s := x.SelectStmt
		ctx := Output
		if s.IntoClause != nil {
			a.setClass(ClassDDL, "SELECT INTO")
			a.st.Writes = append(a.st.Writes, rangeVarName(s.IntoClause.Rel))
			ctx = Copied
		} else {
			a.setClass(ClassRead, "SELECT")
		}
		outs, complete := a.query(s, nil)
		a.consumeOutputs(outs, ctx, top && ctx == Output, complete)
	case *pg_query.Node_InsertStmt:
		a.insert(x.InsertStmt)
	case *pg_query.Node_UpdateStmt:
		a.update(x.UpdateStmt)
	case *pg_query.Node_DeleteStmt:
		a.delete(x.DeleteStmt)
	case *pg_query.Node_MergeStmt:
		a.setClass(ClassWrite, "MERGE")
		a.unsure("MERGE is not analysed by the gateway")
		a.scanFunctions(n)
	case *pg_query.Node_CopyStmt:
		a.copy(x.CopyStmt)
	case *pg_query.Node_ExplainStmt:
		a.setClass(ClassRead, "EXPLAIN")
		// EXPLAIN returns a plan, not the rows; EXPLAIN ANALYZE runs the
		// statement, so it is decided like the statement itself.
		inner := &analyzer{cat: a.cat, st: &Statement{}, record: a.record, depth: a.depth}
		inner.statement(x.ExplainStmt.Query, false)
		a.merge(inner.st)
		if inner.st.Class != ClassRead && inner.st.Class != "" {
			a.st.Class = inner.st.Class
		}
	case *pg_query.Node_DeclareCursorStmt:
		a.st.Forgets.Portals = append(a.st.Forgets.Portals, x.DeclareCursorStmt.Portalname)
		a.setClass(ClassRead, "DECLARE CURSOR")
		// FETCH returns the cursor's rows with their column origins, so
		// they are decided (and masked) like a SELECT's.
		inner := &analyzer{cat: a.cat, st: &Statement{}, record: a.record, depth: a.depth}
		inner.statement(x.DeclareCursorStmt.Query, true)
		a.merge(inner.st)
		if inner.st.Class != ClassRead {
			a.st.Class = inner.st.Class
		}
	case *pg_query.Node_PrepareStmt:
		a.st.Forgets.Statements = append(a.st.Forgets.Statements, x.PrepareStmt.Name)
		inner := &analyzer{cat: a.cat, st: &Statement{}, record: a.record, depth: a.depth}
		inner.statement(x.PrepareStmt.Query, true)
		a.merge(inner.st)
		a.setClass(inner.st.Class, "PREPARE")
	case *pg_query.Node_ExecuteStmt:
		a.setClass(ClassSession, "EXECUTE")
		a.st.RowsFromElsewhere = true
		for _, p := range x.ExecuteStmt.Params {
			a.consume(a.expr(p, &scope{}, Expression), Expression)
		}
	case *pg_query.Node_FetchStmt:
		a.setClass(ClassSession, "FETCH")
		a.st.RowsFromElsewhere = true
	case *pg_query.Node_CreateTableAsStmt:
		c := x.CreateTableAsStmt
		cmd := "CREATE TABLE AS"
		if c.Objtype == pg_query.ObjectType_OBJECT_MATVIEW {
			cmd = "CREATE MATERIALIZED VIEW"
		}
		a.setClass(ClassDDL, cmd)
		if c.Into != nil {
			a.st.Writes = append(a.st.Writes, rangeVarName(c.Into.Rel))
		}
		inner := &analyzer{cat: a.cat, st: &Statement{}, record: a.record, depth: a.depth}
		inner.statement(c.Query, false)
		// The rows are stored, not returned: every output is copied.
		for _, u := range inner.st.Uses {
			if u.Context == Output {
				u.Context = Copied
			}
			a.st.Uses = append(a.st.Uses, u)
		}
		inner.st.Uses = nil
		a.merge(inner.st)
	case *pg_query.Node_ViewStmt:
		v := x.ViewStmt
		a.setClass(ClassDDL, "CREATE VIEW")
		a.st.Writes = append(a.st.Writes, rangeVarName(v.View))
		inner := &analyzer{cat: a.cat, st: &Statement{}, record: a.record, depth: a.depth}
		inner.statement(v.Query, false)
		for _, u := range inner.st.Uses {
			if u.Context == Output {
				u.Context = Copied
			}
			a.st.Uses = append(a.st.Uses, u)
		}
		inner.st.Uses = nil
		a.merge(inner.st)
	case *pg_query.Node_TransactionStmt:
		a.setClass(ClassTransaction, "TRANSACTION")
	case *pg_query.Node_VariableSetStmt:
		a.setVariable(x.VariableSetStmt)
	case *pg_query.Node_VariableShowStmt:
		a.setClass(ClassSession, "SHOW")
	case *pg_query.Node_DiscardStmt:
		a.setClass(ClassSession, "DISCARD")
		if x.DiscardStmt.Target == pg_query.DiscardMode_DISCARD_ALL {
			a.st.Forgets.AllStatements, a.st.Forgets.AllPortals = true, true
		}
	case *pg_query.Node_DeallocateStmt:
		a.setClass(ClassSession, "DEALLOCATE")
		if d := x.DeallocateStmt; d.Isall || d.Name == "" {
			a.st.Forgets.AllStatements = true
		} else {
			a.st.Forgets.Statements = append(a.st.Forgets.Statements, d.Name)
		}
	case *pg_query.Node_ClosePortalStmt:
		a.setClass(ClassSession, "CLOSE")
		if n := x.ClosePortalStmt.Portalname; n == "" {
			a.st.Forgets.AllPortals = true
		} else {
			a.st.Forgets.Portals = append(a.st.Forgets.Portals, n)
		}
	case *pg_query.Node_ListenStmt:
		a.setClass(ClassSession, "LISTEN")
		a.feature(FeatureListen)
	case *pg_query.Node_UnlistenStmt:
		a.setClass(ClassSession, "UNLISTEN")
	case *pg_query.Node_NotifyStmt:
		a.setClass(ClassSession, "NOTIFY")
	case *pg_query.Node_DoStmt:
		a.setClass(ClassAdmin, "DO")
		a.feature(FeatureDo)
	case *pg_query.Node_LoadStmt:
		a.setClass(ClassAdmin, "LOAD")
		a.feature(FeatureLoad)
	case *pg_query.Node_AlterSystemStmt:
		a.setClass(ClassAdmin, "ALTER SYSTEM")
		a.feature(FeatureAlterSystem)
	case *pg_query.Node_CreateFunctionStmt:
		a.setClass(ClassDDL, "CREATE FUNCTION")
		a.feature(FeatureCreateFunction)
	case *pg_query.Node_CreatePlangStmt:
		a.setClass(ClassDDL, "CREATE LANGUAGE")
		a.feature(FeatureCreateFunction)
	case *pg_query.Node_CallStmt:
		a.setClass(ClassWrite, "CALL")
		a.scanFunctions(n)
	case *pg_query.Node_TruncateStmt:
		a.setClass(ClassWrite, "TRUNCATE")
		for _, r := range x.TruncateStmt.Relations {
			a.st.Writes = append(a.st.Writes, rangeVarName(r.GetRangeVar()))
		}
	case *pg_query.Node_LockStmt:
		a.setClass(ClassWrite, "LOCK")
	case *pg_query.Node_CreateForeignServerStmt, *pg_query.Node_CreateUserMappingStmt, *pg_query.Node_AlterUserMappingStmt,
		*pg_query.Node_ImportForeignSchemaStmt, *pg_query.Node_CreateFdwStmt, *pg_query.Node_AlterForeignServerStmt,
		*pg_query.Node_AlterFdwStmt, *pg_query.Node_CreateForeignTableStmt:
		a.setClass(ClassDDL, "FOREIGN DATA")
		a.feature(FeatureForeignData)
	case *pg_query.Node_GrantStmt, *pg_query.Node_GrantRoleStmt, *pg_query.Node_CreateRoleStmt, *pg_query.Node_AlterRoleStmt,
		*pg_query.Node_AlterRoleSetStmt, *pg_query.Node_DropRoleStmt, *pg_query.Node_VacuumStmt, *pg_query.Node_ReindexStmt,
		*pg_query.Node_ClusterStmt, *pg_query.Node_CheckPointStmt, *pg_query.Node_AlterDefaultPrivilegesStmt,
		*pg_query.Node_CreatedbStmt, *pg_query.Node_DropdbStmt, *pg_query.Node_AlterDatabaseStmt, *pg_query.Node_AlterDatabaseSetStmt,
		*pg_query.Node_CreateTableSpaceStmt, *pg_query.Node_DropTableSpaceStmt, *pg_query.Node_ReassignOwnedStmt,
		*pg_query.Node_DropOwnedStmt, *pg_query.Node_CreateSubscriptionStmt, *pg_query.Node_AlterSubscriptionStmt,
		*pg_query.Node_CreatePublicationStmt, *pg_query.Node_AlterPublicationStmt, *pg_query.Node_CreateEventTrigStmt,
		*pg_query.Node_SecLabelStmt, *pg_query.Node_AlterOwnerStmt:
		a.setClass(ClassAdmin, strings.ToUpper(commandName(n)))
		a.scanFunctions(n)
	case *pg_query.Node_CreateStmt, *pg_query.Node_AlterTableStmt, *pg_query.Node_DropStmt, *pg_query.Node_IndexStmt,
		*pg_query.Node_RenameStmt, *pg_query.Node_CommentStmt, *pg_query.Node_CreateSeqStmt, *pg_query.Node_AlterSeqStmt,
		*pg_query.Node_CreateSchemaStmt, *pg_query.Node_CompositeTypeStmt, *pg_query.Node_CreateEnumStmt,
		*pg_query.Node_CreateDomainStmt, *pg_query.Node_RuleStmt, *pg_query.Node_CreateTrigStmt, *pg_query.Node_DefineStmt,
		*pg_query.Node_RefreshMatViewStmt, *pg_query.Node_CreateExtensionStmt, *pg_query.Node_AlterExtensionStmt,
		*pg_query.Node_CreatePolicyStmt, *pg_query.Node_AlterPolicyStmt, *pg_query.Node_CreateStatsStmt,
		*pg_query.Node_AlterObjectSchemaStmt, *pg_query.Node_CreateCastStmt, *pg_query.Node_CreateOpClassStmt,
		*pg_query.Node_CreateConversionStmt, *pg_query.Node_CreateTransformStmt, *pg_query.Node_AlterEnumStmt,
		*pg_query.Node_AlterDomainStmt, *pg_query.Node_AlterFunctionStmt, *pg_query.Node_CreateRangeStmt:
		a.setClass(ClassDDL, strings.ToUpper(commandName(n)))
		if _, ok := n.GetNode().(*pg_query.Node_RuleStmt); ok {
			// A rule's actions run on later statements, unseen by the
			// gateway's analysis of those statements.
			a.unsure("rules are not analysed by the gateway")
		}
		if _, ok := n.GetNode().(*pg_query.Node_CreateExtensionStmt); ok {
			a.feature(FeatureCreateFunction) // an extension installs functions
		}
		a.scanFunctions(n)
	default:
		a.setClass(ClassAdmin, strings.ToUpper(commandName(n)))
		a.unsure("%s statements are not analysed by the gateway", commandName(n))
	}
}

// commandName turns a node type (CreateStmt) into words (create).
func commandName(n *pg_query.Node) string {
	if n == nil || n.GetNode() == nil {
		return "empty"
	}
	name := string(n.ProtoReflect().WhichOneof(n.ProtoReflect().Descriptor().Oneofs().Get(0)).Message().Name())
	name = strings.TrimSuffix(name, "Stmt")
	var b strings.Builder
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

// merge takes an inner analysis's findings into this statement.
func (a *analyzer) merge(in *Statement) {
	a.st.Reads = append(a.st.Reads, in.Reads...)
	a.st.Writes = append(a.st.Writes, in.Writes...)
	a.st.Uses = append(a.st.Uses, in.Uses...)
	a.st.Functions = append(a.st.Functions, in.Functions...)
	for _, f := range in.Features {
		a.feature(f)
	}
	if in.Outputs != nil || in.OutputsKnown {
		a.st.Outputs, a.st.OutputsKnown = in.Outputs, in.OutputsKnown
	}
	a.st.RowsFromElsewhere = a.st.RowsFromElsewhere || in.RowsFromElsewhere
	if in.Unsure != "" {
		a.unsure("%s", in.Unsure)
	}
	a.st.Positional = a.st.Positional || in.Positional
}

// securitySettings are settings a client must not change through the
// gateway without the security_setting feature: they change whose
// privileges apply or what the server logs and checks.
var securitySettings = map[string]bool{
	"role": true, "session_authorization": true, "row_security": true, "session_replication_role": true,
	"log_statement": true, "log_min_duration_statement": true, "log_min_messages": true, "log_min_error_statement": true,
	"default_transaction_read_only": false, "search_path": false,
	"local_preload_libraries": true, "session_preload_libraries": true, "jit_provider": true,
	"dynamic_library_path": true, "lo_compat_privileges": true, "allow_system_table_mods": true,
	"ignore_system_indexes": true, "zero_damaged_pages": true, "ignore_checksum_failure": true,
	"track_activities": true, "log_parameter_max_length": true, "log_parameter_max_length_on_error": true,
}

func (a *analyzer) setVariable(v *pg_query.VariableSetStmt) {
	name := strings.ToLower(v.Name)
	a.setClass(ClassSession, "SET")
	switch {
	case name == "role" || name == "session_authorization":
		a.feature(FeatureSetRole)
	case v.Kind == pg_query.VariableSetKind_VAR_RESET_ALL:
		// RESET ALL returns settings to their session defaults; it does
		// not reset the role.
	case securitySettings[name]:
		a.feature(FeatureSecuritySetting)
	}
	for _, arg := range v.Args {
		a.scanFunctions(arg)
	}
}

// consumeOutputs records how a top-level query's result columns are used
// and, for a query whose rows go to the client, its outputs.
func (a *analyzer) consumeOutputs(outs []srcCol, ctx Context, client, complete bool) {
	for _, o := range outs {
		a.consume(o.lin, ctx)
	}
	if client {
		a.st.Outputs = make([]ResultColumn, len(outs))
		for i, o := range outs {
			a.st.Outputs[i].Name = o.name
			if o.lin.plain {
				a.st.Outputs[i].Carries = o.lin.cols
			}
		}
		a.st.OutputsKnown = complete
	}
}

// query analyses a SELECT (including VALUES and set operations) and
// returns its output columns. outer is the enclosing scope (correlated
// subqueries, LATERAL). complete is false when the column list is not
// known (a star over a relation missing from the catalog).
func (a *analyzer) query(s *pg_query.SelectStmt, outer *scope) (outs []srcCol, complete bool) {
	a.depth++
	defer func() { a.depth-- }()
	if a.depth > maxDepth {
		a.unsure("the statement nests deeper than %d levels", maxDepth)
		return nil, false
	}
	if s == nil {
		return nil, true
	}
	sc := &scope{parent: outer}
	if s.WithClause != nil {
		a.with(s.WithClause, sc)
	}
	if s.Op != pg_query.SetOperation_SETOP_NONE && s.Op != pg_query.SetOperation_SET_OPERATION_UNDEFINED {
		// UNION, INTERSECT, EXCEPT: PostgreSQL does not keep the origin
		// of a set operation's columns, so what the branches return is
		// an expression of their columns.
		lo, lc := a.query(s.Larg, sc)
		ro, rc := a.query(s.Rarg, sc)
		for i := range lo {
			l := lo[i].lin
			if i < len(ro) {
				l = union(l, ro[i].lin)
			}
			a.consume(l, Expression)
			outs = append(outs, srcCol{name: lo[i].name, lin: l.derived()})
		}
		out := &source{cols: outs, complete: lc && rc}
		a.sortClause(s.SortClause, &scope{parent: sc, sources: []*source{out}}, outs)
		a.limits(s, sc)
		return outs, lc && rc
	}
	if len(s.ValuesLists) > 0 {
		for ri, row := range s.ValuesLists {
			items := row.GetList().GetItems()
			for i, v := range items {
				l := a.expr(v, sc, Expression)
				if ri == 0 {
					outs = append(outs, srcCol{name: fmt.Sprintf("column%d", i+1), lin: l.derived()})
				} else if i < len(outs) {
					outs[i].lin = union(outs[i].lin, l)
				}
			}
		}
		a.sortClause(s.SortClause, sc, outs)
		a.limits(s, sc)
		return outs, true
	}
	for _, f := range s.FromClause {
		a.fromItem(f, sc)
	}
	if s.WhereClause != nil {
		a.expr(s.WhereClause, sc, Filter)
	}
	complete = true
	for _, t := range s.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			a.unsure("unexpected target list entry")
			continue
		}
		cols, ok := a.target(rt, sc)
		complete = complete && ok
		outs = append(outs, cols...)
	}
	for _, g := range s.GroupClause {
		a.groupItem(g, sc, outs)
	}
	if s.HavingClause != nil {
		a.expr(s.HavingClause, sc, Filter)
	}
	for _, d := range s.DistinctClause {
		if d != nil && d.GetNode() != nil {
			a.groupItem(d, sc, outs)
		}
	}
	if len(s.DistinctClause) > 0 {
		// SELECT DISTINCT groups by every output column.
		for _, o := range outs {
			a.consume(o.lin, Filter)
		}
	}
	for _, w := range s.WindowClause {
		a.expr(w, sc, Filter)
	}
	a.sortClause(s.SortClause, sc, outs)
	a.limits(s, sc)
	return outs, complete
}

func (a *analyzer) limits(s *pg_query.SelectStmt, sc *scope) {
	if s.LimitCount != nil {
		a.expr(s.LimitCount, sc, Expression)
	}
	if s.LimitOffset != nil {
		a.expr(s.LimitOffset, sc, Expression)
	}
}

// groupItem handles a GROUP BY or DISTINCT ON item: a position or output
// name refers to an output column; anything else is an expression over the
// FROM items.
func (a *analyzer) groupItem(n *pg_query.Node, sc *scope, outs []srcCol) {
	if l, ok := a.outputRef(n, outs); ok {
		a.consume(l, Filter)
		return
	}
	a.expr(n, sc, Filter)
}

func (a *analyzer) sortClause(items []*pg_query.Node, sc *scope, outs []srcCol) {
	for _, it := range items {
		sb := it.GetSortBy()
		if sb == nil {
			a.expr(it, sc, Filter)
			continue
		}
		a.groupItem(sb.Node, sc, outs)
	}
}

// outputRef resolves ORDER BY 2 or ORDER BY name to an output column.
func (a *analyzer) outputRef(n *pg_query.Node, outs []srcCol) (lineage, bool) {
	if c := n.GetAConst(); c != nil {
		a.st.Positional = true
		if iv, ok := c.Val.(*pg_query.A_Const_Ival); ok {
			i := int(iv.Ival.Ival)
			if i >= 1 && i <= len(outs) {
				return outs[i-1].lin, true
			}
		}
		return lineage{}, false
	}
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 {
		name := cr.Fields[0].GetString_().GetSval()
		var ls []lineage
		for _, o := range outs {
			if o.name == name {
				ls = append(ls, o.lin)
			}
		}
		if len(ls) > 0 {
			l := union(ls...)
			l.plain = true
			return l, true
		}
	}
	return lineage{}, false
}

// with registers the CTEs of a WITH clause in sc.
func (a *analyzer) with(w *pg_query.WithClause, sc *scope) {
	if sc.ctes == nil {
		sc.ctes = map[string]*source{}
	}
	for _, c := range w.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		var outs []srcCol
		complete := true
		if w.Recursive {
			// The CTE may refer to itself: register a placeholder first.
			sc.ctes[cte.Ctename] = &source{alias: cte.Ctename}
		}
		switch q := cte.Ctequery.GetNode().(type) {
		case *pg_query.Node_SelectStmt:
			outs, complete = a.query(q.SelectStmt, sc)
			if w.Recursive {
				// A recursive CTE's rows pass through a union: no origin.
				for i := range outs {
					a.consume(outs[i].lin, Expression)
					outs[i].lin = outs[i].lin.derived()
				}
			}
		default:
			// INSERT/UPDATE/DELETE … RETURNING inside WITH.
			inner := &analyzer{cat: a.cat, st: &Statement{}, record: a.record, depth: a.depth}
			inner.statement(cte.Ctequery, false)
			a.merge(inner.st)
			a.st.Class = ClassWrite
			a.st.Command = inner.st.Command
			complete = false
		}
		for i, n := range cte.Aliascolnames {
			if i < len(outs) {
				outs[i].name = n.GetString_().GetSval()
			}
		}
		sc.ctes[cte.Ctename] = &source{alias: cte.Ctename, cols: outs, complete: complete}
	}
}

// fromItem adds a FROM item's sources to sc.
func (a *analyzer) fromItem(n *pg_query.Node, sc *scope) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_RangeVar:
		sc.sources = append(sc.sources, a.relation(x.RangeVar, sc))
	case *pg_query.Node_RangeSubselect:
		rs := x.RangeSubselect
		parent := &scope{parent: sc.parent, ctes: sc.ctes}
		if rs.Lateral {
			parent = sc // LATERAL sees the FROM items before it
		}
		sel := rs.Subquery.GetSelectStmt()
		if sel == nil {
			a.unsure("unexpected subquery in FROM")
			return
		}
		outs, complete := a.query(sel, parent)
		src := &source{cols: outs, complete: complete}
		applyAlias(src, rs.Alias)
		sc.sources = append(sc.sources, src)
	case *pg_query.Node_RangeFunction:
		rf := x.RangeFunction
		var lin lineage
		for _, f := range rf.Functions {
			// Each item is a list: the function call, then its column
			// definition list.
			for _, it := range f.GetList().GetItems() {
				if it != nil && it.GetNode() != nil && it.GetList() == nil {
					lin = union(lin, a.expr(it, sc, Expression))
				}
			}
		}
		// A function's result columns are computed: an expression of
		// whatever went into the call.
		src := &source{cols: nil, complete: false}
		if rf.Alias != nil {
			src.alias = rf.Alias.Aliasname
			for _, c := range rf.Alias.Colnames {
				src.cols = append(src.cols, srcCol{name: c.GetString_().GetSval(), lin: lin.derived()})
			}
		}
		for _, c := range rf.Coldeflist {
			if cd := c.GetColumnDef(); cd != nil {
				src.cols = append(src.cols, srcCol{name: cd.Colname, lin: lin.derived()})
			}
		}
		if src.alias == "" && len(rf.Functions) == 1 {
			items := rf.Functions[0].GetList().GetItems()
			if len(items) > 0 {
				if fc := items[0].GetFuncCall(); fc != nil && len(fc.Funcname) > 0 {
					src.alias = fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval()
				}
			}
		}
		if len(src.cols) == 0 {
			src.cols = []srcCol{{name: src.alias, lin: lin.derived()}}
		}
		sc.sources = append(sc.sources, src)
	case *pg_query.Node_JoinExpr:
		j := x.JoinExpr
		inner := &scope{parent: sc.parent, ctes: sc.ctes}
		inner.sources = append(inner.sources, sc.sources...) // LATERAL joins see earlier items
		before := len(inner.sources)
		a.fromItem(j.Larg, inner)
		a.fromItem(j.Rarg, inner)
		added := inner.sources[before:]
		if j.Quals != nil {
			a.expr(j.Quals, inner, Filter)
		}
		using := j.UsingClause
		var usingNames []string
		for _, u := range using {
			usingNames = append(usingNames, u.GetString_().GetSval())
		}
		if j.IsNatural && len(added) == 2 {
			for _, c := range added[0].cols {
				if _, ok := added[1].col(c.name); ok {
					usingNames = append(usingNames, c.name)
				}
			}
			if !added[0].complete || !added[1].complete {
				a.unsure("NATURAL JOIN over a relation whose columns the gateway does not know")
			}
		}
		for _, name := range usingNames {
			for _, s := range added {
				if l, ok := s.col(name); ok {
					a.consume(l, Filter)
				}
			}
		}
		if j.Alias != nil || j.JoinUsingAlias != nil || len(usingNames) > 0 {
			// A join with an alias hides its members' names; a merged
			// USING column is COALESCE of both sides (no origin). Both are
			// modelled as one source holding every member column.
			merged := &source{complete: true}
			for _, s := range added {
				merged.complete = merged.complete && s.complete
				for _, c := range s.cols {
					if slices.Contains(usingNames, c.name) {
						c.lin = c.lin.derived()
					}
					merged.cols = append(merged.cols, c)
				}
			}
			if j.Alias != nil {
				merged.alias = j.Alias.Aliasname
				sc.sources = append(sc.sources, merged)
				return
			}
			if j.JoinUsingAlias != nil {
				merged.alias = j.JoinUsingAlias.Aliasname
			}
			// Without an alias the members stay visible by name, and the
			// merged columns (unqualified) resolve to the derived copy.
			sc.sources = append(sc.sources, added...)
			sc.sources = append(sc.sources, merged)
			return
		}
		sc.sources = append(sc.sources, added...)
	case *pg_query.Node_RangeTableFunc, *pg_query.Node_RangeTableSample:
		if ts := n.GetRangeTableSample(); ts != nil {
			a.fromItem(ts.Relation, sc)
			for _, arg := range ts.Args {
				a.expr(arg, sc, Expression)
			}
			return
		}
		a.unsure("XMLTABLE in FROM is not analysed by the gateway")
	default:
		a.unsure("unexpected FROM item %s", commandName(n))
	}
}

func applyAlias(src *source, al *pg_query.Alias) {
	if al == nil {
		return
	}
	src.alias = al.Aliasname
	for i, c := range al.Colnames {
		if i < len(src.cols) {
			src.cols[i].name = c.GetString_().GetSval()
		}
	}
}

// catalogValueRelations are system catalogs whose rows hold copies of data
// values (statistics, other sessions' query texts, large objects).
var catalogValueRelations = map[string]bool{
	"pg_statistic": true, "pg_stats": true, "pg_stats_ext": true, "pg_stats_ext_exprs": true,
	"pg_statistic_ext_data": true, "pg_largeobject": true, "pg_stat_activity": true,
	"pg_stat_statements": true, "pg_authid": true, "pg_shadow": true, "pg_user_mapping": true,
	"pg_user_mappings": true, "pg_stat_statements_info": true, "pg_prepared_xacts": false,
}

// relation resolves a table or view name to a source.
func (a *analyzer) relation(rv *pg_query.RangeVar, sc *scope) *source {
	name := rv.Relname
	alias := name
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	if rv.Schemaname == "" {
		if c := sc.cte(name); c != nil {
			src := &source{alias: alias, cols: slices.Clone(c.cols), complete: c.complete}
			applyAlias(src, rv.Alias)
			return src
		}
	}
	if catalogValueRelations[name] && (rv.Schemaname == "" || rv.Schemaname == "pg_catalog") {
		a.feature(FeatureCatalogValues)
	}
	rels := a.cat.Relations(rv.Schemaname, name)
	src := &source{alias: alias, schema: rv.Schemaname}
	if len(rels) == 0 {
		// Not in the catalog: a system catalog, a temporary table of this
		// session, or a relation that does not exist (the server will
		// say so). None holds classified columns.
		a.st.Reads = append(a.st.Reads, rangeVarName(rv))
		applyAlias(src, rv.Alias)
		return src
	}
	src.complete = true
	for i, r := range rels {
		a.st.Reads = append(a.st.Reads, r.QualifiedName())
		cols := a.relationColumns(r)
		if cols == nil {
			src.complete = false
		}
		if i == 0 {
			src.cols = cols
			continue
		}
		// Several relations of this name (in different schemas):
		// search_path picks one at run time, so the source stands for all
		// of them, column by column.
		for _, c := range cols {
			found := false
			for j := range src.cols {
				if src.cols[j].name == c.name {
					src.cols[j].lin = union(src.cols[j].lin, c.lin)
					src.cols[j].lin.plain = true
					found = true
				}
			}
			if !found {
				src.cols = append(src.cols, c)
			}
		}
	}
	applyAlias(src, rv.Alias)
	return src
}

// relationColumns returns what each column of r carries: a table's own
// columns, or what a view's definition puts in each of its columns.
func (a *analyzer) relationColumns(r *Relation) []srcCol {
	if r.IsView() {
		shape := viewOf(a.cat, r, a.depth)
		if shape.err != nil {
			a.unsure("view %s could not be analysed: %v", r.QualifiedName(), shape.err)
			return nil
		}
		return slices.Clone(shape.cols)
	}
	cols := make([]srcCol, 0, len(r.Columns))
	for _, c := range r.Columns {
		if c == "" {
			continue
		}
		cols = append(cols, srcCol{name: c, lin: lineage{cols: []Column{{Rel: r.OID, Table: r.QualifiedName(), Name: c, Kin: r.KinList()}}, plain: true}})
	}
	return cols
}

// viewOf analyses a view's definition once per catalog snapshot. What the
// definition does inside (its WHERE, its functions) is the view owner's
// decision; what reaches the reader is what its columns carry.
func viewOf(cat Catalog, r *Relation, depth int) *viewShape {
	r.viewOnce.Do(func() {
		r.view = &viewShape{}
		if depth > maxDepth/2 {
			r.view.err = errors.New("views nest too deep")
			return
		}
		tree, err := parseTree(r.ViewQuery)
		if err != nil || len(tree.Stmts) != 1 {
			r.view.err = fmt.Errorf("definition does not parse")
			return
		}
		sel := tree.Stmts[0].Stmt.GetSelectStmt()
		if sel == nil {
			r.view.err = errors.New("definition is not a SELECT")
			return
		}
		va := &analyzer{cat: cat, st: &Statement{}, record: false, depth: depth + 1}
		outs, _ := va.query(sel, nil)
		if va.st.Unsure != "" {
			r.view.err = errors.New(va.st.Unsure)
			return
		}
		r.view.cols = outs
	})
	return r.view
}

// target analyses one target list entry and returns the output columns it
// makes (a star makes several).
func (a *analyzer) target(rt *pg_query.ResTarget, sc *scope) ([]srcCol, bool) {
	if cr := rt.Val.GetColumnRef(); cr != nil {
		if isStar(cr) {
			srcs, ok := a.starSources(cr, sc)
			if !ok {
				return nil, false
			}
			var outs []srcCol
			complete := true
			for _, s := range srcs {
				outs = append(outs, s.cols...)
				complete = complete && s.complete
			}
			return outs, complete
		}
		l, whole := a.resolve(cr, sc)
		if whole {
			a.consume(l, WholeRow)
			l = l.derived()
		}
		name := rt.Name
		if name == "" {
			name = cr.Fields[len(cr.Fields)-1].GetString_().GetSval()
		}
		if len(rt.Indirection) > 0 {
			a.unsure("unexpected indirection in a target")
		}
		return []srcCol{{name: name, lin: l}}, true
	}
	l := a.expr(rt.Val, sc, Expression)
	name := rt.Name
	if name == "" {
		name = "?column?"
	}
	return []srcCol{{name: name, lin: l.derived()}}, true
}

func isStar(cr *pg_query.ColumnRef) bool {
	return len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil
}

// starSources returns the sources a * or t.* expands over.
func (a *analyzer) starSources(cr *pg_query.ColumnRef, sc *scope) ([]*source, bool) {
	if len(cr.Fields) == 1 {
		return sc.sources, true
	}
	qual := fieldNames(cr.Fields[:len(cr.Fields)-1])
	if s := findSource(sc, qual); s != nil {
		return []*source{s}, true
	}
	a.unsure("%s.* does not name a FROM item the gateway can see", strings.Join(qual, "."))
	return nil, false
}

func fieldNames(fs []*pg_query.Node) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.GetString_().GetSval()
	}
	return out
}

// findSource finds the FROM item a qualifier names, innermost level first.
func findSource(sc *scope, qual []string) *source {
	for s := sc; s != nil; s = s.parent {
		for i := len(s.sources) - 1; i >= 0; i-- {
			src := s.sources[i]
			switch len(qual) {
			case 1:
				if src.alias == qual[0] {
					return src
				}
			case 2, 3:
				q := qual[len(qual)-2:]
				if src.alias == q[1] && (src.schema == q[0] || src.schema == "") {
					return src
				}
			}
		}
	}
	return nil
}

// resolve finds what a column reference reads. whole is true when it names
// a whole row (SELECT h FROM hcp h) rather than a column.
func (a *analyzer) resolve(cr *pg_query.ColumnRef, sc *scope) (l lineage, whole bool) {
	names := fieldNames(cr.Fields)
	for _, n := range names {
		if n == "" {
			a.unsure("unexpected column reference")
			return lineage{}, false
		}
	}
	if len(names) == 1 {
		name := names[0]
		var found []lineage
		for s := sc; s != nil; s = s.parent {
			allKnown := true
			for _, src := range s.sources {
				if c, ok := src.col(name); ok {
					found = append(found, c)
				}
				allKnown = allKnown && src.complete
			}
			if len(found) > 0 && allKnown {
				break
			}
		}
		if len(found) > 0 {
			l := union(found...)
			l.plain = true
			for _, f := range found {
				l.plain = l.plain && f.plain
			}
			return l, false
		}
		if src := findSource(sc, names); src != nil {
			return src.all(), true
		}
		return lineage{}, false
	}
	// t.col, schema.t.col, db.schema.t.col — or col.field (a composite
	// column's field) when no FROM item is called t.
	col := names[len(names)-1]
	if src := findSource(sc, names[:len(names)-1]); src != nil {
		if c, ok := src.col(col); ok {
			return c, false
		}
		if src.complete {
			// Not a column: PostgreSQL reads t.f as f(t) when f is a
			// function taking the row type — a whole-row use.
			return src.all(), true
		}
		return lineage{}, false
	}
	if len(names) == 2 {
		inner, whole := a.resolve(&pg_query.ColumnRef{Fields: cr.Fields[:1]}, sc)
		if len(inner.cols) > 0 {
			if whole {
				return inner, true
			}
			return inner.derived(), false // a field of a composite value
		}
	}
	return lineage{}, false
}

// expr walks an expression, records the uses of the columns it reads in
// ctx (or Expression, where a value is transformed) and returns what the
// expression's value derives from.
func (a *analyzer) expr(n *pg_query.Node, sc *scope, ctx Context) lineage {
	if n == nil || n.GetNode() == nil {
		return lineage{}
	}
	a.depth++
	defer func() { a.depth-- }()
	if a.depth > maxDepth {
		a.unsure("the statement nests deeper than %d levels", maxDepth)
		return lineage{}
	}
	switch x := n.GetNode().(type) {
	case *pg_query.Node_ColumnRef:
		cr := x.ColumnRef
		if isStar(cr) {
			// t.* inside an expression is the whole row.
			srcs, _ := a.starSources(cr, sc)
			var ls []lineage
			for _, s := range srcs {
				ls = append(ls, s.all())
			}
			l := union(ls...)
			a.consume(l, WholeRow)
			return l.derived()
		}
		l, whole := a.resolve(cr, sc)
		if whole {
			a.consume(l, WholeRow)
			return l.derived()
		}
		a.consume(l, ctx)
		return l
	case *pg_query.Node_AConst, *pg_query.Node_ParamRef:
		return lineage{}
	case *pg_query.Node_BoolExpr:
		var ls []lineage
		for _, arg := range x.BoolExpr.Args {
			ls = append(ls, a.expr(arg, sc, ctx))
		}
		return union(ls...).derived()
	case *pg_query.Node_NullTest:
		return a.expr(x.NullTest.Arg, sc, ctx).derived()
	case *pg_query.Node_AExpr:
		e := x.AExpr
		a.operator(e.Name)
		opCtx := Expression
		if ctx == Filter && comparison(e) {
			opCtx = Filter
		}
		l := union(a.operand(e.Lexpr, sc, opCtx), a.operand(e.Rexpr, sc, opCtx))
		return l.derived()
	case *pg_query.Node_SubLink:
		sl := x.SubLink
		subCtx := Expression
		if ctx == Filter && (sl.SubLinkType == pg_query.SubLinkType_ANY_SUBLINK || sl.SubLinkType == pg_query.SubLinkType_ALL_SUBLINK ||
			sl.SubLinkType == pg_query.SubLinkType_EXISTS_SUBLINK || sl.SubLinkType == pg_query.SubLinkType_EXPR_SUBLINK) {
			subCtx = Filter
		}
		a.operator(sl.OperName)
		tl := a.operand(sl.Testexpr, sc, subCtx)
		sel := sl.Subselect.GetSelectStmt()
		if sel == nil {
			a.unsure("unexpected sublink")
			return lineage{}
		}
		outs, _ := a.query(sel, sc)
		if sl.SubLinkType == pg_query.SubLinkType_EXISTS_SUBLINK {
			return lineage{}
		}
		var ls []lineage
		for _, o := range outs {
			// A sublink's value is not a column PostgreSQL reports the
			// origin of: returned in a target list it is an expression.
			a.consume(o.lin, subCtx)
			ls = append(ls, o.lin)
		}
		return union(append(ls, tl)...).derived()
	case *pg_query.Node_FuncCall:
		fc := x.FuncCall
		a.function(fc.Funcname)
		var ls []lineage
		for _, arg := range fc.Args {
			ls = append(ls, a.expr(arg, sc, Expression))
		}
		for _, o := range fc.AggOrder {
			ls = append(ls, a.expr(o, sc, Expression))
		}
		if fc.AggFilter != nil {
			ls = append(ls, a.expr(fc.AggFilter, sc, Expression))
		}
		if fc.Over != nil {
			ls = append(ls, a.walkChildren(fc.Over.ProtoReflect(), sc))
		}
		return union(ls...).derived()
	case *pg_query.Node_SortBy:
		return a.expr(x.SortBy.Node, sc, ctx)
	case *pg_query.Node_WindowDef:
		return a.walkChildren(x.WindowDef.ProtoReflect(), sc)
	case *pg_query.Node_SelectStmt:
		outs, _ := a.query(x.SelectStmt, sc)
		var ls []lineage
		for _, o := range outs {
			a.consume(o.lin, Expression)
			ls = append(ls, o.lin)
		}
		return union(ls...).derived()
	case *pg_query.Node_TypeCast:
		if tn := x.TypeCast.TypeName; tn != nil {
			a.typeName(tn)
		}
		return a.expr(x.TypeCast.Arg, sc, Expression).derived()
	case *pg_query.Node_RangeVar, *pg_query.Node_RangeSubselect, *pg_query.Node_JoinExpr:
		a.unsure("unexpected relation inside an expression")
		return lineage{}
	}
	return a.walkChildren(n.ProtoReflect(), sc)
}

// operand handles one side of an operator: a plain column compared in a
// filter is a filter use; anything else is an expression.
func (a *analyzer) operand(n *pg_query.Node, sc *scope, ctx Context) lineage {
	if n == nil {
		return lineage{}
	}
	if ctx == Filter {
		if n.GetColumnRef() != nil || n.GetSubLink() != nil {
			return a.expr(n, sc, Filter)
		}
		if l := n.GetList(); l != nil {
			// IN (a, b, c), BETWEEN x AND y
			var ls []lineage
			for _, it := range l.Items {
				ls = append(ls, a.operand(it, sc, Filter))
			}
			return union(ls...)
		}
	}
	return a.expr(n, sc, Expression)
}

// comparison reports whether an operator compares its operands (so a
// column operand leaks only by oracle).
func comparison(e *pg_query.A_Expr) bool {
	switch e.Kind {
	case pg_query.A_Expr_Kind_AEXPR_OP, pg_query.A_Expr_Kind_AEXPR_OP_ANY, pg_query.A_Expr_Kind_AEXPR_OP_ALL:
		if len(e.Name) != 1 {
			return false
		}
		switch e.Name[0].GetString_().GetSval() {
		case "=", "<>", "!=", "<", ">", "<=", ">=", "~~", "!~~", "~~*", "!~~*":
			return true
		}
		return false
	case pg_query.A_Expr_Kind_AEXPR_DISTINCT, pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT, pg_query.A_Expr_Kind_AEXPR_IN,
		pg_query.A_Expr_Kind_AEXPR_LIKE, pg_query.A_Expr_Kind_AEXPR_ILIKE, pg_query.A_Expr_Kind_AEXPR_BETWEEN,
		pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN, pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		return true
	}
	return false
}

// walkChildren walks every node below m as expressions. Nodes the
// analysis does not know are handled here, conservatively: every column
// found inside is an expression use.
func (a *analyzer) walkChildren(m protoreflect.Message, sc *scope) lineage {
	var ls []lineage
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		visit := func(mm protoreflect.Message) {
			if n, ok := mm.Interface().(*pg_query.Node); ok {
				ls = append(ls, a.expr(n, sc, Expression))
				return
			}
			if tn, ok := mm.Interface().(*pg_query.TypeName); ok {
				a.typeName(tn)
				return
			}
			ls = append(ls, a.walkChildren(mm, sc))
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message())
			}
		} else if !fd.IsMap() {
			visit(v.Message())
		}
		return true
	})
	return union(ls...)
}

// function records a function call.
func (a *analyzer) function(names []*pg_query.Node) {
	f := Function{}
	parts := fieldNames(names)
	switch len(parts) {
	case 0:
		return
	case 1:
		f.Name = parts[0]
		f.Shadowable = a.cat.UserFunction(f.Name)
	default:
		f.Schema, f.Name = parts[len(parts)-2], parts[len(parts)-1]
	}
	if !slices.Contains(a.st.Functions, f) {
		a.st.Functions = append(a.st.Functions, f)
	}
}

// operator records an operator named with OPERATOR(schema.op) outside
// pg_catalog as a function call: it runs a function the role must allow.
func (a *analyzer) operator(names []*pg_query.Node) {
	parts := fieldNames(names)
	if len(parts) >= 2 && parts[len(parts)-2] != "pg_catalog" {
		f := Function{Schema: parts[len(parts)-2], Name: "operator " + parts[len(parts)-1]}
		if !slices.Contains(a.st.Functions, f) {
			a.st.Functions = append(a.st.Functions, f)
		}
	}
}

// typeName refuses casts to types outside pg_catalog for roles that do not
// allow their input functions: such a cast runs a function.
func (a *analyzer) typeName(tn *pg_query.TypeName) {
	parts := fieldNames(tn.Names)
	if len(parts) >= 2 && parts[0] != "pg_catalog" {
		f := Function{Schema: parts[len(parts)-2], Name: "type " + parts[len(parts)-1]}
		if !slices.Contains(a.st.Functions, f) {
			a.st.Functions = append(a.st.Functions, f)
		}
	}
}

// scanFunctions records every function called anywhere below n (for
// statements whose other parts do not carry data).
func (a *analyzer) scanFunctions(n *pg_query.Node) {
	if n == nil {
		return
	}
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if fc, ok := m.Interface().(*pg_query.FuncCall); ok {
			a.function(fc.Funcname)
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
				return true
			}
			if fd.IsList() {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					visit(l.Get(i).Message())
				}
			} else {
				visit(v.Message())
			}
			return true
		})
	}
	visit(n.ProtoReflect())
}

func rangeVarName(rv *pg_query.RangeVar) string {
	if rv == nil {
		return ""
	}
	if rv.Schemaname != "" {
		return rv.Schemaname + "." + rv.Relname
	}
	return rv.Relname
}

func dedupUses(us []Use) []Use {
	out := us[:0]
	for _, u := range us {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}
