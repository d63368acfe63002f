package pgtest

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestNewDatabase(t *testing.T) {
	c, db := NewDatabase(t)
	res := Exec(t, c, db, "select current_database(), current_user")
	if got := string(res[0].Rows[0][0]); got != db {
		t.Fatalf("current_database = %q, want %q", got, db)
	}
}
