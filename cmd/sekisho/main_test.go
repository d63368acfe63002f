package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sekisho/sekisho/internal/pgtest"
)

// withCluster stops pgtest's shared PostgreSQL after the tests.
type withCluster struct{ m *testing.M }

func (w withCluster) Run() int {
	code := pgtest.Main(w.m)
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	return code
}

func TestMain(m *testing.M) {
	testscript.Main(withCluster{m}, map[string]func(){
		"sekisho": func() { os.Exit(run(os.Args[1:])) },
	})
}

// TestScripts runs the CLI behaviour described in testdata/script/*.txtar.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script"})
}
