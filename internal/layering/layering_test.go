package layering

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sekisho/sekisho/"

// allowed lists, per package, the sekisho packages it may import directly;
// every other sekisho import fails the test. A new internal package needs
// its own line here, which is where its place in the layers is decided.
var allowed = map[string][]string{
	"internal/wire":     {},
	"internal/audit":    {},
	"internal/sqlscope": {},
	"internal/pki":      {},
	"internal/store":    {},
	"internal/config":   {},
	"internal/pglocal":  {"internal/pki"},
	"internal/pgtest":   {"internal/pglocal"},
	"internal/demodata": {},
	"internal/identity": {"internal/audit", "internal/store"},
	"internal/proxy":    {"internal/wire", "internal/audit", "internal/config", "internal/identity", "internal/pki", "internal/sqlscope", "internal/store"},
	"internal/admin":    {"internal/audit", "internal/proxy", "internal/store"},
}

func TestImportsPointDownward(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, module)
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
			permitted := false
			for _, a := range ok {
				permitted = permitted || a == dep
			}
			if !permitted {
				t.Errorf("%s imports %s, against the layering (allowed: %v)", name, dep, ok)
			}
		}
	}
	if seen < len(allowed) {
		t.Errorf("only %d of %d packages with rules were found", seen, len(allowed))
	}
}
