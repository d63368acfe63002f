package sqlscope

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// target makes the source for the table a write statement changes.
func (a *analyzer) writeTarget(rv *pg_query.RangeVar, sc *scope) *source {
	src := a.relation(rv, sc)
	// relation recorded it as read; a write statement also writes it.
	a.st.Writes = append(a.st.Writes, rangeVarName(rv))
	if rels := a.cat.Relations(rv.Schemaname, rv.Relname); len(rels) > 0 {
		a.st.Writes[len(a.st.Writes)-1] = rels[0].QualifiedName()
	}
	return src
}

// returning handles RETURNING: PostgreSQL does not report the origin of
// its columns, so what it returns is an expression of them.
func (a *analyzer) returning(list []*pg_query.Node, sc *scope) {
	var outs []srcCol
	for _, t := range list {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		cols, _ := a.target(rt, sc)
		outs = append(outs, cols...)
	}
	for _, o := range outs {
		a.consume(o.lin, Expression)
	}
	if len(list) > 0 {
		a.st.Outputs = make([]ResultColumn, len(outs))
		for i, o := range outs {
			a.st.Outputs[i].Name = o.name
		}
		a.st.OutputsKnown = true
	}
}

func (a *analyzer) insert(s *pg_query.InsertStmt) {
	a.setClass(ClassWrite, "INSERT")
	sc := &scope{}
	if s.WithClause != nil {
		a.with(s.WithClause, sc)
	}
	// INSERT … SELECT stores what the query reads: a copy.
	if sel := s.SelectStmt.GetSelectStmt(); sel != nil {
		outs, _ := a.query(sel, sc)
		for _, o := range outs {
			a.consume(o.lin, Copied)
		}
	}
	target := a.writeTarget(s.Relation, sc)
	tsc := &scope{parent: sc, sources: []*source{target}}
	if oc := s.OnConflictClause; oc != nil {
		// EXCLUDED is the proposed row: values the client sent.
		ex := &source{alias: "excluded", cols: nil, complete: false}
		osc := &scope{parent: sc, sources: []*source{target, ex}}
		for _, t := range oc.TargetList {
			if rt := t.GetResTarget(); rt != nil {
				a.consume(a.expr(rt.Val, osc, Expression), Copied)
			}
		}
		if oc.WhereClause != nil {
			a.expr(oc.WhereClause, osc, Filter)
		}
		if oc.Infer != nil && oc.Infer.WhereClause != nil {
			a.expr(oc.Infer.WhereClause, tsc, Filter)
		}
	}
	a.returning(s.ReturningList, tsc)
}

func (a *analyzer) update(s *pg_query.UpdateStmt) {
	a.setClass(ClassWrite, "UPDATE")
	sc := &scope{}
	if s.WithClause != nil {
		a.with(s.WithClause, sc)
	}
	target := a.writeTarget(s.Relation, sc)
	sc.sources = append(sc.sources, target)
	for _, f := range s.FromClause {
		a.fromItem(f, sc)
	}
	for _, t := range s.TargetList {
		if rt := t.GetResTarget(); rt != nil {
			// SET a = b stores b's value in a: a copy.
			l := a.expr(rt.Val, sc, Expression)
			a.consume(l, Copied)
		}
	}
	if s.WhereClause != nil {
		a.expr(s.WhereClause, sc, Filter)
	}
	a.returning(s.ReturningList, sc)
}

func (a *analyzer) delete(s *pg_query.DeleteStmt) {
	a.setClass(ClassWrite, "DELETE")
	sc := &scope{}
	if s.WithClause != nil {
		a.with(s.WithClause, sc)
	}
	target := a.writeTarget(s.Relation, sc)
	sc.sources = append(sc.sources, target)
	for _, f := range s.UsingClause {
		a.fromItem(f, sc)
	}
	if s.WhereClause != nil {
		a.expr(s.WhereClause, sc, Filter)
	}
	a.returning(s.ReturningList, sc)
}

func (a *analyzer) copy(s *pg_query.CopyStmt) {
	a.setClass(ClassCopy, "COPY")
	switch {
	case s.IsProgram:
		a.feature(FeatureCopyProgram)
	case s.Filename != "":
		a.feature(FeatureCopyFile)
	}
	if s.Query != nil {
		if s.IsFrom {
			a.unsure("COPY (query) FROM is not valid")
			return
		}
		sel := s.Query.GetSelectStmt()
		if sel == nil {
			// COPY (INSERT … RETURNING) TO: decided as that statement,
			// its returned rows copied out.
			inner := &analyzer{cat: a.cat, st: &Statement{}, record: a.record, depth: a.depth}
			inner.statement(s.Query, false)
			a.merge(inner.st)
			a.st.Class, a.st.Command = ClassCopy, "COPY"
			return
		}
		outs, _ := a.query(sel, &scope{})
		for _, o := range outs {
			a.consume(o.lin, Copied)
		}
		return
	}
	if s.Relation == nil {
		a.unsure("COPY without a table or query")
		return
	}
	sc := &scope{}
	var src *source
	if s.IsFrom {
		src = a.writeTarget(s.Relation, sc)
	} else {
		src = a.relation(s.Relation, sc)
	}
	if s.WhereClause != nil {
		a.expr(s.WhereClause, &scope{sources: []*source{src}}, Filter)
	}
	if s.IsFrom {
		return
	}
	// COPY table TO: every listed column (or all) leaves as copy data.
	if len(s.Attlist) == 0 {
		if !src.complete && len(a.cat.Relations(s.Relation.Schemaname, s.Relation.Relname)) > 0 {
			a.unsure("the columns of %s are not known to the gateway", rangeVarName(s.Relation))
		}
		a.consume(src.all(), Copied)
		return
	}
	for _, c := range s.Attlist {
		name := c.GetString_().GetSval()
		if l, ok := src.col(name); ok {
			a.consume(l, Copied)
		}
	}
}
