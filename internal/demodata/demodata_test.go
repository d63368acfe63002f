package demodata

import (
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sekisho/sekisho/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestLoadIsDeterministic(t *testing.T) {
	digest := func() (string, string) {
		c, db := pgtest.NewDatabase(t)
		conn, err := pgconn.Connect(t.Context(), c.ConnString(db))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(t.Context())
		if err := Load(t.Context(), conn, 5000, 1000); err != nil {
			t.Fatal(err)
		}
		res, err := conn.Exec(t.Context(), `SELECT md5(string_agg(h::text, '|' ORDER BY id)) FROM hcp h; SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM cases c;
			SELECT count(*), count(DISTINCT email), min(email), count(*) FILTER (WHERE email !~ '@([a-z.]+\.)?example\.(jp|com)$') FROM hcp`).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		stats := res[2].Rows[0]
		if string(stats[0]) != "5000" || string(stats[1]) != "5000" || string(stats[3]) != "0" {
			t.Fatalf("hcp stats: count %s, distinct emails %s, foreign domains %s", stats[0], stats[1], stats[3])
		}
		return string(res[0].Rows[0][0]), string(res[1].Rows[0][0])
	}
	h1, c1 := digest()
	h2, c2 := digest()
	if h1 != h2 || c1 != c2 {
		t.Fatalf("two loads differ: %s/%s vs %s/%s", h1, c1, h2, c2)
	}
}

func TestNamesLookJapanese(t *testing.T) {
	c, db := pgtest.NewDatabase(t)
	conn, err := pgconn.Connect(t.Context(), c.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if err := Load(t.Context(), conn, 10, 10); err != nil {
		t.Fatal(err)
	}
	res, err := conn.Exec(t.Context(), "SELECT name, name_kana, institution, institution_address FROM hcp WHERE id = 1").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	row := res[0].Rows[0]
	t.Logf("hcp 1: %s / %s / %s / %s", row[0], row[1], row[2], row[3])
	if !strings.Contains(string(row[0]), " ") || strings.ContainsAny(string(row[1]), "abcdefghijklmnopqrstuvwxyz") {
		t.Fatalf("unexpected name %q kana %q", row[0], row[1])
	}
}
