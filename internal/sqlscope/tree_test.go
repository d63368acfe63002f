package sqlscope

import (
	"strings"
	"testing"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// treeSamples are statements whose trees must read the same from JSON as
// from protobuf: the node kinds the analysis looks at, escapes, enums,
// numbers of every sign and size.
var treeSamples = []string{
	typicalSelect,
	"SELECT 1, -1, 2147483647, 9223372036854775807, 1.5e10, -0.0, true, false, NULL, 'it''s', E'tab\\there\\u00e9\\U0001F600', $1",
	`SELECT U&"\0065mail", "quoted ""name""" FROM public.hcp h WHERE h.id = ANY($1::bigint[]) ORDER BY 1 DESC NULLS LAST`,
	"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
	"SELECT count(*) FILTER (WHERE x > 1) OVER (PARTITION BY y ORDER BY z ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t",
	"INSERT INTO t (a, b) VALUES (1, 'x') ON CONFLICT (a) DO UPDATE SET b = excluded.b RETURNING *",
	"UPDATE t SET a = a + 1 FROM u WHERE t.id = u.id RETURNING t.a",
	"DELETE FROM t USING u WHERE t.id = u.id",
	"COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv, HEADER true)",
	"COPY t (a, b) FROM STDIN (FORMAT binary)",
	"CREATE TABLE x (id bigint PRIMARY KEY, v text DEFAULT 'a' CHECK (length(v) < 10))",
	"CREATE VIEW v AS SELECT a, b FROM t WHERE c IS NOT NULL",
	"DECLARE c BINARY CURSOR WITH HOLD FOR SELECT * FROM t; FETCH FORWARD 5 FROM c; CLOSE c",
	"BEGIN ISOLATION LEVEL SERIALIZABLE; SAVEPOINT s; ROLLBACK TO s; COMMIT",
	"SET search_path = a, b; RESET ALL; SHOW work_mem; SET LOCAL statement_timeout = '5s'",
	"SELECT CASE WHEN a THEN b ELSE c END, coalesce(a, b), greatest(1, 2), a IS DISTINCT FROM b, a BETWEEN 1 AND 2, x LIKE 'a%' ESCAPE '\\'",
	"SELECT (ARRAY[1,2])[1], (row(1,2)).f1, t.*::text, interval '1 day', timestamp '2024-01-01', B'1010', X'ff'",
	"SELECT * FROM a NATURAL FULL JOIN b, LATERAL (SELECT 1) l, generate_series(1, 3) WITH ORDINALITY g(n, i)",
	"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
	"DO $$BEGIN RAISE NOTICE '%', 1; END$$",
	"SELECT '日本語', \"列\" FROM \"表\" WHERE x = '\x01\x1f' OR y = '\"\\/'",
	"SELECT xmlelement(name x, 'y'), jsonb_path_query('{}', '$.a'), 1::numeric(10,2), 1e400, -9223372036854775808",
	"ALTER TABLE t ADD COLUMN c int; DROP TABLE IF EXISTS t CASCADE; GRANT SELECT ON t TO r",
	"EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
	"PREPARE p(int) AS SELECT $1; EXECUTE p(1); DEALLOCATE p",
	"SELECT * FROM hcp TABLESAMPLE SYSTEM (10) REPEATABLE (1) FOR UPDATE SKIP LOCKED",
	"SELECT x FROM t GROUP BY GROUPING SETS ((a), (b), ()) HAVING count(*) > 1 WINDOW w AS (ORDER BY x)",
	"CREATE FUNCTION f(a int DEFAULT 1) RETURNS SETOF t LANGUAGE sql STABLE AS 'SELECT 1'",
}

func checkTree(t *testing.T, sql string) {
	t.Helper()
	want, werr := pg_query.Parse(sql)
	j, jerr := pg_query.ParseToJSON(sql)
	if (werr == nil) != (jerr == nil) {
		t.Fatalf("%q: protobuf error %v, JSON error %v", sql, werr, jerr)
	}
	if werr != nil {
		return
	}
	got := &pg_query.ParseResult{}
	if err := decodeJSONTree(j, got); err != nil {
		// parseTree falls back to the protobuf output: slower, never wrong.
		return
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%q: the tree read from JSON differs from the protobuf tree", sql)
	}
}

func TestTreeMatchesProtobuf(t *testing.T) {
	for _, s := range treeSamples {
		checkTree(t, s)
		// And the decoder does not decline them (that would be slow).
		j, _ := pg_query.ParseToJSON(s)
		if err := decodeJSONTree(j, &pg_query.ParseResult{}); err != nil {
			t.Errorf("%q: the JSON reader declined: %v", s, err)
		}
	}
}

func TestTreeDecoderRefusesWhatItDoesNotKnow(t *testing.T) {
	for _, j := range []string{
		``, `{`, `{"stmts":[{"stmt":{"NoSuchStmt":{}}}]}`, `{"version":1,"extra":2}`, `{"stmts":[1]}`,
		`{"version":"x"}`, `{"stmts":[{"stmt":{"SelectStmt":{"op":"NOT_AN_OP"}}}]}`, `{"version":150001} trailing`,
		`{"stmts":[{"stmt":{"String":{"sval":"\ud800"}}}]}`, strings.Repeat(`{"stmts":[{"stmt":{"List":{"items":[`, 20000),
	} {
		if err := decodeJSONTree(j, &pg_query.ParseResult{}); err == nil {
			t.Errorf("%.60q decoded", j)
		}
	}
}

func FuzzTreeMatchesProtobuf(f *testing.F) {
	for _, s := range treeSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 4096 || strings.IndexByte(sql, 0) >= 0 || !utf8.ValidString(sql) {
			return // Analyze refuses these before parsing
		}
		checkTree(t, sql)
	})
}
