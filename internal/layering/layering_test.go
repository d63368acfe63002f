package layering

import (
	"errors"
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sekisho/sekisho/"

// allowed lists, per package, the sekisho packages it may import directly;
// every other sekisho import fails the test. A new internal package needs
// its own line here, which is where its place in the layers is decided.
var allowed = map[string][]string{
	"internal/wire":     {},
	"internal/netio":    {},
	"internal/audit":    {},
	"internal/sqlscope": {},
	"internal/pki":      {},
	"internal/store":    {},
	"internal/mask":     {},
	"internal/config":   {"internal/mask"},
	"internal/policy":   {"internal/config", "internal/mask", "internal/sqlscope"},
	"internal/pglocal":  {"internal/pki"},
	"internal/pgtest":   {"internal/pglocal"},
	"internal/oidctest": {},
	"internal/demodata": {},
	"internal/identity": {"internal/audit", "internal/store"},
	"internal/loginapi": {},
	"internal/client":   {"internal/loginapi", "internal/wire"},
	"internal/proxy":    {"internal/wire", "internal/netio", "internal/audit", "internal/config", "internal/identity", "internal/pki", "internal/sqlscope", "internal/store", "internal/policy", "internal/mask", "internal/loginapi"},
	"internal/admin":    {"internal/audit", "internal/proxy", "internal/store"},
	"internal/alert":    {"internal/audit"},
}

func TestImportsPointDownward(t *testing.T) {
	// The files are read in this process (go/build), not by a child
	// "go list", so the test cache knows when they change.
	root := filepath.Join("..", "..")
	var dirs []string
	for _, top := range []string{"internal", "cmd"} {
		entries, err := os.ReadDir(filepath.Join(root, top))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, top+"/"+e.Name())
			}
		}
	}
	seen := 0
	for _, name := range dirs {
		p, err := build.ImportDir(filepath.Join(root, name), 0)
		if err != nil {
			var noGo *build.NoGoError
			if errors.As(err, &noGo) {
				continue
			}
			t.Fatalf("%s: %v", name, err)
		}
		ok, checked := allowed[name]
		if !checked {
			if strings.HasPrefix(name, "internal/") && name != "internal/layering" {
				t.Errorf("package %s has no layering rule: add it to allowed", name)
			}
			continue
		}
		seen++
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			if !slices.Contains(ok, dep) {
				t.Errorf("%s imports %s, against the layering (allowed: %v)", name, dep, ok)
			}
		}
	}
	if seen < len(allowed) {
		t.Errorf("only %d of %d packages with rules were found", seen, len(allowed))
	}
}
