package proxy

import (
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/mask"
	"github.com/sekisho/sekisho/internal/policy"
	"github.com/sekisho/sekisho/internal/sqlscope"
)

// policyInspector decides a session's statements with its role's data
// policy and masks its results. It is the gateway's Inspector.
type policyInspector struct {
	srv        *Server
	cfg        *config.Config
	up         config.Upstream
	pol        *policy.Policy
	restricted bool // the role masks or denies some protected column here
	cat        *sqlscope.Snapshot
	catEntry   *catalogEntry
	masks      *mask.Stream // made at the first masked result
	// The session's last decision, with the catalog it was taken with:
	// a client repeating one statement (the same text, or, when the
	// decision was taken by literal shape, the same shape with other
	// numbers) gets it again without the shared cache's lock and lookup
	// (role, database and configuration are the session's own).
	// lastShaped: lastKey is a shape's key, not a text.
	lastKey    string
	lastShaped bool
	lastCat    *sqlscope.Snapshot
	lastD      policy.Decision
}

func (s *Server) policyInspector(p Principal) Inspector {
	cfg := s.Config()
	u, _ := cfg.Upstream(p.Database)
	pol, err := policy.New(cfg, p.Role, p.Database)
	i := &policyInspector{srv: s, cfg: cfg, up: u, pol: pol, catEntry: s.catalogs.entry(u.Database)}
	if err == nil {
		i.restricted = pol.Restricted()
	}
	return i
}

func fromPolicy(r *policy.Refusal) *Refusal {
	return &Refusal{Code: r.Code, Message: r.Message, Hint: r.Hint, Reason: r.Reason}
}

func (i *policyInspector) catalogRefusal() *Refusal {
	return &Refusal{Code: "58000", Reason: "catalog_unavailable",
		Message: "sekisho could not load the database catalog it decides statements with",
		Hint:    "Try again in a moment; if it persists, tell " + i.cfg.Contact + "."}
}

// Statement implements Inspector.
func (i *policyInspector) Statement(st *Statement) *Refusal {
	if i.pol == nil {
		return &Refusal{Code: codeInsufficientPrivilege, Reason: "no_role",
			Message: "sekisho refused: the session's role is not configured", Hint: "Ask " + i.cfg.Contact + "."}
	}
	at := st.At
	if at.IsZero() {
		at = time.Now()
	}
	cat, err := i.srv.catalogOf(i.catEntry, i.cfg, i.up, at)
	if err != nil {
		i.srv.log.Warn("catalog unavailable", "database", i.up.Database, "err", err)
		return i.catalogRefusal()
	}
	i.cat = cat
	if !st.Shape.Known {
		st.Shape = sqlscope.ShapeOf(st.Text)
	}
	var d policy.Decision
	if i.lastCat == cat && i.repeats(st) {
		d = i.lastD
	} else {
		var byShape bool
		d, byShape = i.srv.decisions.decide(i.cfg, i.pol, st.Principal.Role, st.Principal.Database, cat, st.Text, st.Shape)
		switch {
		case byShape:
			i.lastKey, i.lastShaped, i.lastCat, i.lastD = st.Shape.Key, true, cat, d
		case len(st.Text) <= maxKeptText:
			i.lastKey, i.lastShaped, i.lastCat, i.lastD = st.Text, false, cat, d
		}
	}
	if d.Refusal != nil {
		return fromPolicy(d.Refusal)
	}
	st.Masked = d.Masked
	for _, s := range d.Statements {
		f := s.Forgets
		st.Forgets.Statements = append(st.Forgets.Statements, f.Statements...)
		st.Forgets.Portals = append(st.Forgets.Portals, f.Portals...)
		st.Forgets.AllStatements = st.Forgets.AllStatements || f.AllStatements
		st.Forgets.AllPortals = st.Forgets.AllPortals || f.AllPortals
		if i.restricted && callsOwnFunction(s.Functions) {
			// A function of the database's own (allowed by the role) may
			// close and open cursors by name; what it does is not seen.
			st.Forgets.AllStatements, st.Forgets.AllPortals = true, true
		}
		if s.Class == sqlscope.ClassDDL || s.Class == sqlscope.ClassAdmin {
			// Views and tables may change: the next decision reloads.
			i.srv.markCatalogStale(i.up.Database)
		}
	}
	return nil
}

// maxKeptText bounds the text a session keeps with its last decision.
const maxKeptText = 8192

// repeats reports whether st is the session's last decided statement
// again: the same text, or the same literal shape when that decision was
// taken by shape (which holds for every text of the shape).
func (i *policyInspector) repeats(st *Statement) bool {
	if i.lastShaped {
		sh := st.Shape
		return sh.OK && sh.N > 0 && sh.Key == i.lastKey
	}
	return i.lastCat != nil && st.Text == i.lastKey
}

// maskedColumn is a result column the role sees masked.
type maskedColumn struct {
	index  int
	fn     mask.Function
	oid    uint32
	format int16
}

// PassesResults reports that Result and Message change nothing for this
// session (its role masks and denies nothing), so the relay need not
// decode results for them (see resultPasser).
func (i *policyInspector) PassesResults() bool { return !i.restricted }

// Result implements Inspector: it finds each result column's origin and
// the role's rule for it, and masks the rows accordingly.
func (i *policyInspector) Result(rd *pgproto3.RowDescription) (RowFilter, *Refusal) {
	if !i.restricted {
		return nil, nil
	}
	if i.cat == nil {
		return nil, i.catalogRefusal()
	}
	var cols []maskedColumn
	reloaded := false
	for idx, f := range rd.Fields {
		rule, _, known := i.pol.ResultRule(i.cat, f.TableOID, int16(f.TableAttributeNumber))
		if !known && !reloaded {
			// A relation newer than the catalog (created in this session,
			// or by someone else just now): load the catalog again.
			reloaded = true
			i.srv.markCatalogStale(i.up.Database)
			cat, err := i.srv.catalog(i.cfg, i.up)
			if err != nil {
				return nil, i.catalogRefusal()
			}
			i.cat = cat
			rule, _, known = i.pol.ResultRule(i.cat, f.TableOID, int16(f.TableAttributeNumber))
		}
		if !known {
			return nil, &Refusal{Code: codeInsufficientPrivilege, Reason: "unknown_column_origin",
				Message: "sekisho refused a result whose column " + string(f.Name) + " comes from a relation it does not know",
				Hint:    "Try again; if it persists, tell " + i.cfg.Contact + "."}
		}
		if rule.Action == "allow" {
			continue
		}
		cols = append(cols, maskedColumn{index: idx, fn: policy.MaskFunction(rule), oid: f.DataTypeOID, format: f.Format})
	}
	if len(cols) == 0 {
		return nil, nil
	}
	n := len(rd.Fields)
	if i.masks == nil {
		i.masks = i.srv.masker.Stream()
	}
	m := i.masks
	return func(values [][]byte) *Refusal {
		if len(values) != n {
			return protocolRefusal("a data row does not match its row description")
		}
		m.Row() // the previous row was encoded for the client already
		for _, c := range cols {
			values[c.index] = m.Apply(c.fn, c.oid, c.format, values[c.index])
		}
		return nil
	}, nil
}

// Message implements Inspector: for a role that masks, an error or notice
// from the server keeps its SQLSTATE and loses anything that could quote a
// value (DETAIL such as "Key (email)=(…)", CONTEXT, quoted values in the
// message).
func (i *policyInspector) Message(e *pgproto3.ErrorResponse) bool {
	if !i.restricted {
		return false
	}
	e.Message = sanitizeQuoted(e.Message, i.cat)
	e.Hint = sanitizeQuoted(e.Hint, i.cat)
	if e.Detail != "" {
		e.Detail = "(detail withheld by sekisho: it may quote protected values)"
	}
	e.Where, e.InternalQuery, e.InternalPosition = "", "", 0
	e.ConstraintName = sanitizeQuoted(e.ConstraintName, nil)
	return true
}

// sanitizeQuoted replaces each "quoted" part of a server message with "…"
// unless it is an identifier the catalog knows: PostgreSQL quotes both
// names and offending input values, and only the names are safe.
func sanitizeQuoted(s string, cat *sqlscope.Snapshot) string {
	if !strings.Contains(s, `"`) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			b.WriteString(s[:i])
			b.WriteString(`"…`)
			return b.String()
		}
		inner := s[i+1 : i+1+j]
		b.WriteString(s[:i+1])
		if cat.KnownName(inner) || typeNames[inner] {
			b.WriteString(inner)
		} else {
			b.WriteString("…")
		}
		b.WriteByte('"')
		s = s[i+2+j:]
	}
}

var typeNames = map[string]bool{"UTF8": true}

// decisionCache keeps decisions per role, database and statement text, for
// one catalog snapshot and one configuration, so an application's repeated
// statements are parsed and decided once.
type decisionCache struct {
	mu sync.Mutex
	m  map[decisionKey]*cachedDecision
}

// decisionKey: text is the statement's text, or its literal shape when
// shaped (the two never collide).
type decisionKey struct {
	role, database, text string
	shaped               bool
}

type cachedDecision struct {
	cfg *config.Config
	cat *sqlscope.Snapshot
	d   policy.Decision
}

// maxCachedDecisions bounds the cache; when full it starts over.
const maxCachedDecisions = 8192

// byShape reports that the decision holds for every text of sh's shape
// (it was taken, or cached, by shape).
func (c *decisionCache) decide(cfg *config.Config, pol *policy.Policy, role, db string, cat *sqlscope.Snapshot, text string, sh sqlscope.Shape) (d policy.Decision, byShape bool) {
	// Statements that differ only in numeric literals (WHERE aid = 42,
	// WHERE aid = 43) share a decision: the parser gives them the same
	// tree but for those values, and no decision depends on a value —
	// except a number that names an output column (ORDER BY 2), which
	// the analysis flags and which is then cached by exact text only.
	if !sh.Known {
		sh = sqlscope.ShapeOf(text)
	}
	k := decisionKey{role: role, database: db, text: text}
	shaped := false
	if sh.OK && sh.N > 0 {
		k.text, k.shaped, shaped = sh.Key, true, true
	}
	cacheable := len(text) <= 8192
	if cacheable {
		c.mu.Lock()
		e, ok := c.m[k]
		byShape = ok && shaped
		if !ok && shaped {
			e, ok = c.m[decisionKey{role: role, database: db, text: text}]
		}
		c.mu.Unlock()
		if ok && e.cfg == cfg && e.cat == cat {
			return e.d, byShape
		}
	}
	sts, err := sqlscope.Analyze(text, cat)
	if err != nil {
		d = policy.Decision{Refusal: policy.AnalysisRefusal(err)}
	} else {
		d = pol.Decide(sts)
	}
	for _, st := range sts {
		if st.Positional && shaped {
			k.text, k.shaped = text, false
		}
	}
	if cacheable {
		c.mu.Lock()
		if c.m == nil || len(c.m) >= maxCachedDecisions {
			c.m = make(map[decisionKey]*cachedDecision)
		}
		c.m[k] = &cachedDecision{cfg: cfg, cat: cat, d: d}
		c.mu.Unlock()
	}
	return d, k.shaped
}

// callsOwnFunction reports whether fs include a function outside the
// built-in safe list (one a role's functions setting allows).
func callsOwnFunction(fs []sqlscope.Function) bool {
	for _, f := range fs {
		if f.Schema != "" && f.Schema != "pg_catalog" || f.Shadowable || !policy.SafeFunctions[f.Name] {
			return true
		}
	}
	return false
}
