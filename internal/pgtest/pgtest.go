// Package pgtest gives tests a real PostgreSQL: one throwaway cluster per
// test binary (started on first use) and a fresh database per test.
//
// Without server binaries a test skips, unless CI is set: then it fails, so
// CI can never count a skipped database test as a pass.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sekisho/sekisho/internal/pglocal"
)

var (
	mu      sync.Mutex
	shared  *pglocal.Cluster
	lastErr error
	dbSeq   atomic.Int64
)

// Main runs the package's tests and stops the shared cluster afterwards.
// Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	shared.Stop()
	shared = nil
	return code
}

// Cluster returns the package's shared cluster, starting it if needed.
func Cluster(t testing.TB) *pglocal.Cluster {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && lastErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared, lastErr = pglocal.Start(ctx, pglocal.Options{})
	}
	if lastErr != nil {
		if lastErr == pglocal.ErrNoServer && os.Getenv("CI") == "" {
			t.Skipf("skipping: %v", lastErr)
		}
		t.Fatalf("pgtest: %v", lastErr)
	}
	c := shared
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PostgreSQL server log (tail):\n%s", c.LogTail(4000))
		}
	})
	return c
}

// NewDatabase creates a fresh database for the test and drops it at cleanup.
func NewDatabase(t testing.TB) (*pglocal.Cluster, string) {
	t.Helper()
	c := Cluster(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	Exec(t, c, "postgres", "CREATE DATABASE "+pglocal.QuoteIdent(name))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgconn.Connect(ctx, c.ConnString("postgres"))
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pglocal.QuoteIdent(name)+" WITH (FORCE)").ReadAll()
	})
	return c, name
}

// Exec runs sql directly (not through the gateway) on database db.
func Exec(t testing.TB, c *pglocal.Cluster, db, sql string) []*pgconn.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, c.ConnString(db))
	if err != nil {
		t.Fatalf("pgtest connect: %v", err)
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("pgtest exec %q: %v", sql, err)
	}
	return res
}
