package proxy

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/sqlscope"
)

// catalogs holds each upstream database's catalog for the statement
// analysis, loaded with the gateway's own credential.
type catalogs struct {
	mu   sync.Mutex
	byDB map[string]*catalogEntry
}

type catalogEntry struct {
	load   sync.Mutex // one load at a time
	snap   atomic.Pointer[sqlscope.Snapshot]
	loaded atomic.Int64 // unix nanoseconds of the snapshot
	stale  atomic.Bool  // DDL went through: reload before the next decision
	busy   atomic.Bool  // a background refresh runs

	// The change check (policy.catalog_check): one connection kept for
	// it, the catalogs' fingerprint at the last load, when it last ran.
	checking    atomic.Bool
	checked     atomic.Int64
	checkMu     sync.Mutex // guards checkConn and fingerprint
	checkConn   *pgconn.PgConn
	fingerprint string
}

func (c *catalogs) entry(db string) *catalogEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byDB == nil {
		c.byDB = map[string]*catalogEntry{}
	}
	e := c.byDB[db]
	if e == nil {
		e = &catalogEntry{}
		c.byDB[db] = e
	}
	return e
}

// catalog returns the database's catalog: loaded now if there is none or
// DDL made it stale; refreshed in the background when it is older than
// policy.catalog_refresh.
func (s *Server) catalog(cfg *config.Config, u config.Upstream) (*sqlscope.Snapshot, error) {
	return s.catalogOf(s.catalogs.entry(u.Database), cfg, u, time.Now())
}

// catalogOf is catalog for the database's entry e (entries are never
// replaced, so a session may keep its own) at time at: the time the
// statement being decided arrived, when the caller has it, so a decision
// costs no clock read of its own.
func (s *Server) catalogOf(e *catalogEntry, cfg *config.Config, u config.Upstream, at time.Time) (*sqlscope.Snapshot, error) {
	snap := e.snap.Load()
	now := at.UnixNano()
	if snap != nil && !e.stale.Load() && time.Duration(now-e.checked.Load()) > cfg.Policy.CatalogCheck.D() && e.checking.CompareAndSwap(false, true) {
		// Due for a check: made before this decision (one short query
		// every policy.catalog_check), so a change is not decided with
		// the old catalog for longer than that.
		s.checkCatalog(e, cfg, u)
	}
	if snap != nil && !e.stale.Load() {
		if time.Duration(now-e.loaded.Load()) > cfg.Policy.CatalogRefresh.D() && e.busy.CompareAndSwap(false, true) {
			s.refreshCatalog(e, cfg, u)
		}
		return snap, nil
	}
	// The deadline (and its timer) only when the catalog must be loaded
	// now, not on every decision.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.UpstreamTimeout.D())
	defer cancel()
	return s.reloadCatalog(ctx, e, cfg, u, time.Now())
}

// refreshCatalog reloads the catalog in the background. A function of its
// own: the goroutine's closure would otherwise put u on the heap in every
// call of catalog, once per decision.
func (s *Server) refreshCatalog(e *catalogEntry, cfg *config.Config, u config.Upstream) {
	go func() {
		defer e.busy.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.UpstreamTimeout.D())
		defer cancel()
		if _, err := s.reloadCatalog(ctx, e, cfg, u, time.Now()); err != nil {
			s.log.Warn("catalog refresh failed", "database", u.Database, "err", err)
		}
	}()
}

// reloadCatalog loads the catalog unless a load that started after since
// already did.
func (s *Server) reloadCatalog(ctx context.Context, e *catalogEntry, cfg *config.Config, u config.Upstream, since time.Time) (*sqlscope.Snapshot, error) {
	e.load.Lock()
	defer e.load.Unlock()
	if snap := e.snap.Load(); snap != nil && e.loaded.Load() >= since.UnixNano() && !e.stale.Load() {
		return snap, nil
	}
	started := time.Now()
	e.stale.Store(false) // DDL after this point marks it again
	snap, fp, err := loadCatalog(ctx, cfg, u)
	if err != nil {
		e.stale.Store(true) // try again at the next decision
		return nil, err
	}
	e.checkMu.Lock()
	e.fingerprint = fp
	e.checkMu.Unlock()
	e.snap.Store(snap)
	e.loaded.Store(started.UnixNano())
	return snap, nil
}

// catalogFingerprintSQL changes whenever a row of the catalogs the
// analysis reads changes (each change writes a new row version: a new
// xmin), so comparing it is enough to know a reload is due.
const catalogFingerprintSQL = `SELECT concat_ws(' ',
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) FROM pg_catalog.pg_class),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) FROM pg_catalog.pg_attribute),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) FROM pg_catalog.pg_rewrite),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) FROM pg_catalog.pg_inherits),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) FROM pg_catalog.pg_namespace))`

// checkCatalog asks the upstream whether its catalog changed since it was
// loaded and marks it stale when it did. A view redefined, or a table
// renamed, altered or attached as a partition by someone else is then
// seen by the next decision, not only at the next full refresh.
func (s *Server) checkCatalog(e *catalogEntry, cfg *config.Config, u config.Upstream) {
	defer e.checking.Store(false)
	e.checked.Store(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.UpstreamTimeout.D())
	defer cancel()
	e.checkMu.Lock()
	defer e.checkMu.Unlock()
	if e.checkConn == nil || e.checkConn.IsClosed() {
		pcfg, err := upstreamConfig(u, map[string]string{"application_name": "sekisho catalog check", "search_path": "pg_catalog"}, cfg.Limits.UpstreamTimeout.D())
		if err != nil {
			return
		}
		if e.checkConn, err = pgconn.ConnectConfig(ctx, pcfg); err != nil {
			e.checkConn = nil
			s.log.Warn("catalog check failed", "database", u.Database, "err", err)
			e.stale.Store(true) // fail closed: reload, and refuse if that fails too
			return
		}
	}
	res, err := e.checkConn.Exec(ctx, catalogFingerprintSQL).ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		e.checkConn.Close(context.Background())
		e.checkConn = nil
		s.log.Warn("catalog check failed", "database", u.Database, "err", err)
		e.stale.Store(true) // fail closed: reload, and refuse if that fails too
		return
	}
	if fp := string(res[0].Rows[0][0]); fp != e.fingerprint {
		e.stale.Store(true) // the next decision reloads (and takes the new fingerprint)
	}
}

// closeCatalogChecks closes the connections kept for catalog checks.
func (c *catalogs) closeChecks() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.byDB {
		e.checkMu.Lock()
		if e.checkConn != nil {
			e.checkConn.Close(context.Background())
			e.checkConn = nil
		}
		e.checkMu.Unlock()
	}
}

// markCatalogStale makes the next decision on db reload its catalog.
func (s *Server) markCatalogStale(db string) { s.catalogs.entry(db).stale.Store(true) }

const catalogRelationsSQL = `SELECT c.oid, n.nspname, c.relname, c.relkind,
  CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) ELSE '' END
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r','p','v','m','f') AND n.nspname NOT IN ('pg_catalog','information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'`

const catalogColumnsSQL = `SELECT a.attrelid, a.attnum, a.attname, a.attisdropped
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND c.relkind IN ('r','p','v','m','f') AND n.nspname NOT IN ('pg_catalog','information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'`

const catalogFunctionsSQL = `SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog','information_schema')`

// catalogInheritsSQL: which tables inherit from, or are partitions of,
// which (a child carries its ancestors' classification).
const catalogInheritsSQL = `SELECT inhrelid, inhparent FROM pg_catalog.pg_inherits`

// LoadCatalog reads an upstream's catalog as the gateway's analysis sees
// it (for policy check and explain).
func LoadCatalog(ctx context.Context, cfg *config.Config, u config.Upstream) (*sqlscope.Snapshot, error) {
	snap, _, err := loadCatalog(ctx, cfg, u)
	return snap, err
}

// loadCatalog reads relations, columns, view definitions, function names
// and inheritance from the upstream, and the catalog's fingerprint.
func loadCatalog(ctx context.Context, cfg *config.Config, u config.Upstream) (*sqlscope.Snapshot, string, error) {
	pcfg, err := upstreamConfig(u, map[string]string{"application_name": "sekisho catalog", "search_path": "pg_catalog"}, cfg.Limits.UpstreamTimeout.D())
	if err != nil {
		return nil, "", err
	}
	pc, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, "", fmt.Errorf("catalog connect: %w", err)
	}
	defer pc.Close(context.Background())
	return readCatalog(ctx, pc)
}

// readCatalog reads the catalog on pc, with the fingerprint taken before
// it: a change after the fingerprint shows at the next check.
func readCatalog(ctx context.Context, pc *pgconn.PgConn) (*sqlscope.Snapshot, string, error) {
	res := pc.Exec(ctx, catalogFingerprintSQL+";"+catalogRelationsSQL+";"+catalogColumnsSQL+";"+catalogFunctionsSQL+";"+catalogInheritsSQL)
	all, err := res.ReadAll()
	if err != nil {
		return nil, "", fmt.Errorf("catalog query: %w", err)
	}
	if len(all) != 5 || len(all[0].Rows) != 1 {
		return nil, "", fmt.Errorf("catalog query: %d results", len(all))
	}
	fingerprint := string(all[0].Rows[0][0])
	results := all[1:]
	byOID := map[uint32]*sqlscope.Relation{}
	var rels []*sqlscope.Relation
	for _, row := range results[0].Rows {
		oid, err := strconv.ParseUint(string(row[0]), 10, 32)
		if err != nil || len(row[3]) != 1 {
			return nil, "", fmt.Errorf("catalog query: unexpected relation row")
		}
		r := &sqlscope.Relation{OID: uint32(oid), Schema: string(row[1]), Name: string(row[2]), Kind: row[3][0], ViewQuery: string(row[4])}
		byOID[r.OID] = r
		rels = append(rels, r)
	}
	for _, row := range results[1].Rows {
		oid, err1 := strconv.ParseUint(string(row[0]), 10, 32)
		num, err2 := strconv.Atoi(string(row[1]))
		if err1 != nil || err2 != nil || num < 1 || num > 1600 {
			return nil, "", fmt.Errorf("catalog query: unexpected column row")
		}
		r := byOID[uint32(oid)]
		if r == nil {
			continue // created between the two scans
		}
		for len(r.Columns) < num {
			r.Columns = append(r.Columns, "")
		}
		if string(row[3]) != "t" {
			r.Columns[num-1] = string(row[2])
		}
	}
	var funcs []string
	for _, row := range results[2].Rows {
		funcs = append(funcs, string(row[0]))
	}
	for _, row := range results[3].Rows {
		child, err1 := strconv.ParseUint(string(row[0]), 10, 32)
		parent, err2 := strconv.ParseUint(string(row[1]), 10, 32)
		if err1 != nil || err2 != nil {
			return nil, "", fmt.Errorf("catalog query: unexpected pg_inherits row")
		}
		if r := byOID[uint32(child)]; r != nil {
			r.Parents = append(r.Parents, uint32(parent))
		}
	}
	return sqlscope.NewSnapshot(rels, funcs), fingerprint, nil
}
