package sqlscope

import (
	"slices"
	"sort"
	"strings"
	"sync"
)

// Relation is a table, view or other relation of the upstream's catalog.
type Relation struct {
	OID    uint32
	Schema string
	Name   string
	// Kind is pg_class.relkind: 'r' table, 'p' partitioned table, 'v'
	// view, 'm' materialized view, 'f' foreign table.
	Kind byte
	// Columns are the column names by attribute number (Columns[0] is
	// attnum 1); a dropped column is "".
	Columns []string
	// ViewQuery is a view's or materialized view's definition
	// (pg_get_viewdef).
	ViewQuery string
	// Parents are the tables this one inherits from or is a partition of
	// (pg_inherits); Ancestors are their qualified names and theirs,
	// nearest first, and Descendants those of the tables that inherit
	// from this one or are its partitions (set by NewSnapshot). A child's
	// rows are its ancestors' kind of rows, and a parent's scan returns
	// its descendants' rows: a column carries the classification of both.
	Parents     []uint32
	Ancestors   []string
	Descendants []string

	viewOnce sync.Once
	view     *viewShape
}

// IsView reports whether the relation's rows come from a query over other
// relations: a view, or a materialized view (whose stored rows are copies
// of what its query read, and are protected like them).
func (r *Relation) IsView() bool { return r.Kind == 'v' || r.Kind == 'm' && r.ViewQuery != "" }

// QualifiedName is schema.name.
func (r *Relation) QualifiedName() string { return r.Schema + "." + r.Name }

// KinList is Ancestors and Descendants as Column.Kin holds them.
func (r *Relation) KinList() string {
	return strings.Join(append(slices.Clone(r.Ancestors), r.Descendants...), "\x00")
}

// viewShape is what a view's output columns carry, from analysing its
// definition.
type viewShape struct {
	cols []srcCol
	err  error
}

// Catalog is the upstream's relations and functions as the analysis needs
// them. Lookups ignore search_path on purpose: an unqualified name stands
// for every relation of that name in any schema, so neither search_path
// nor a temporary table can make the gateway see a different table than
// the server reads.
type Catalog interface {
	// Relations returns the relations called name, in schema (or in any
	// schema when schema is "").
	Relations(schema, name string) []*Relation
	// UserFunction reports whether a function called name exists outside
	// pg_catalog (so an unqualified call could reach it through
	// search_path).
	UserFunction(name string) bool
	// RelationByOID finds a relation by its OID (nil: unknown).
	RelationByOID(oid uint32) *Relation
}

// Snapshot is a Catalog loaded at one moment.
type Snapshot struct {
	byName    map[string][]*Relation // name → relations in every schema
	byOID     map[uint32]*Relation
	functions map[string]bool
	names     map[string]bool // every relation and column name
}

// NewSnapshot builds a catalog from loaded relations and the names of
// functions outside pg_catalog and information_schema.
func NewSnapshot(rels []*Relation, userFunctions []string) *Snapshot {
	s := &Snapshot{byName: map[string][]*Relation{}, byOID: map[uint32]*Relation{}, functions: map[string]bool{}, names: map[string]bool{}}
	for _, r := range rels {
		s.byName[r.Name] = append(s.byName[r.Name], r)
		s.byOID[r.OID] = r
		s.names[r.Name] = true
		for _, c := range r.Columns {
			s.names[c] = true
		}
	}
	for _, f := range userFunctions {
		s.functions[f] = true
	}
	children := map[uint32][]uint32{}
	for _, r := range rels {
		for _, p := range r.Parents {
			children[p] = append(children[p], r.OID)
		}
	}
	for _, r := range rels {
		r.Ancestors = s.walk(r, func(x *Relation) []uint32 { return x.Parents })
		r.Descendants = s.walk(r, func(x *Relation) []uint32 { return children[x.OID] })
	}
	return s
}

// walk follows pg_inherits from r (upwards or downwards, by next),
// breadth first, each relation once.
func (s *Snapshot) walk(r *Relation, next func(*Relation) []uint32) []string {
	var out []string
	seen := map[uint32]bool{r.OID: true}
	queue := slices.Clone(next(r))
	for len(queue) > 0 && len(out) < 1000 {
		oid := queue[0]
		queue = queue[1:]
		p := s.byOID[oid]
		if p == nil || seen[oid] {
			continue
		}
		seen[oid] = true
		out = append(out, p.QualifiedName())
		queue = append(queue, next(p)...)
	}
	return out
}

// Relations implements Catalog.
func (s *Snapshot) Relations(schema, name string) []*Relation {
	if s == nil {
		return nil
	}
	all := s.byName[name]
	if schema == "" {
		return all
	}
	var out []*Relation
	for _, r := range all {
		if r.Schema == schema || strings.HasPrefix(schema, "pg_temp") && strings.HasPrefix(r.Schema, "pg_temp") {
			out = append(out, r)
		}
	}
	return out
}

// UserFunction implements Catalog.
func (s *Snapshot) UserFunction(name string) bool { return s != nil && s.functions[name] }

// RelationByOID implements Catalog.
func (s *Snapshot) RelationByOID(oid uint32) *Relation {
	if s == nil {
		return nil
	}
	return s.byOID[oid]
}

// KnownName reports whether name is the name of a relation or column in
// the catalog (used to tell identifiers from values in server messages).
func (s *Snapshot) KnownName(name string) bool { return s != nil && s.names[name] }

// Names returns every relation name, sorted.
func (s *Snapshot) Names() []string {
	out := make([]string, 0, len(s.byName))
	for n := range s.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Len is the number of relations.
func (s *Snapshot) Len() int { return len(s.byOID) }

// ViewColumn returns the base column a view's output column (by attribute
// number) carries unchanged, if it carries exactly one kind of base column
// unchanged; derived reports that the column is computed from base columns
// (which it lists).
func ViewColumn(cat Catalog, r *Relation, attnum int) (carried []Column, plain bool, err error) {
	shape := viewOf(cat, r, 0)
	if shape.err != nil {
		return nil, false, shape.err
	}
	if attnum < 1 || attnum > len(shape.cols) {
		return nil, false, nil
	}
	c := shape.cols[attnum-1]
	return c.lin.cols, c.lin.plain, nil
}
