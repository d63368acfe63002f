package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sekisho/sekisho/internal/demodata"
	"github.com/sekisho/sekisho/internal/pgtest"
)

// TestPolicyCommands runs policy check and explain against a live schema.
func TestPolicyCommands(t *testing.T) {
	c, db := pgtest.NewDatabase(t)
	pc, err := pgconn.Connect(t.Context(), c.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(t.Context())
	if err := demodata.Load(t.Context(), pc, 50, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(t.Context(), "CREATE TABLE notes (id int, email text)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	dir := gatewayDir(t, c.Password, nil)
	write := func(extra string, roleLines ...string) string {
		cfg := "state_dir: state\ncontact: dpo@example.jp\n" + `roles:
  analyst:
    networks: [127.0.0.1]
    databases: ["*"]
    statements: [read]
    read: [hcp]
    protected: {email: {mask: partial_email}, name: {mask: pseudonym}}
` + strings.Join(roleLines, "") + `
subjects:
  - database: ` + db + `
    table: hcp
    key: id
    columns: {email: email, name: name` + extra + `}
upstreams:
` + upstreamLine(c, db)
		p := filepath.Join(dir, "sekisho.yaml")
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(sekishoBinary(t), args...).CombinedOutput()
		return string(out), err
	}

	cfg := write("")
	out, err := run("policy", "check", "--config", cfg)
	if err != nil || !strings.Contains(out, "policy check: ok") || !strings.Contains(out, "public.notes.email is named like a protected column but is not classified") {
		t.Fatalf("check: %v\n%s", err, out)
	}

	// A masking role given every function, or a feature that reaches
	// data by a path the analysis cannot follow, is reported.
	cfg = write("", "    functions: [\"*\"]\n", "    features: [do, catalog_values]\n")
	out, err = run("policy", "check", "--config", cfg)
	for _, want := range []string{
		`warning: roles.analyst: masks or denies protected columns but allows every function (functions: ["*"])`,
		"warning: roles.analyst: masks or denies protected columns but allows the feature do,",
		"warning: roles.analyst: masks or denies protected columns but allows the feature catalog_values,",
	} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("check of a masking role with every function: %v: want %q in\n%s", err, want, out)
		}
	}
	cfg = write("")
	if out, _ = run("policy", "check", "--config", cfg); strings.Contains(out, "masks or denies protected columns but allows") {
		t.Fatalf("check warned about a role that allows no function or feature:\n%s", out)
	}

	cfg = write(", phone: phone")
	out, err = run("policy", "check", "--config", cfg)
	if err == nil || !strings.Contains(out, `error: subjects: public.hcp has no column "phone"`) {
		t.Fatalf("check with a missing column: %v\n%s", err, out)
	}

	cfg = write("")
	out, err = run("policy", "explain", "--config", cfg, "--role", "analyst", "--sql", "SELECT id, email FROM hcp")
	if err != nil || !strings.Contains(out, "decision: allowed; protected columns in the results are masked") ||
		!strings.Contains(out, "email: mask: partial_email [protected.email]") {
		t.Fatalf("explain masked: %v\n%s", err, out)
	}
	out, err = run("policy", "explain", "--config", cfg, "--role", "analyst", "--sql", "SELECT upper(name) FROM hcp")
	if err != nil || !strings.Contains(out, "decision: refused 42501 (masked_expression)") || !strings.Contains(out, "hint: ") {
		t.Fatalf("explain refused: %v\n%s", err, out)
	}
	out, err = run("policy", "explain", "--config", cfg, "--role", "nobody", "--sql", "SELECT 1")
	if err == nil || !strings.Contains(out, "hint: roles: analyst") {
		t.Fatalf("explain unknown role: %v\n%s", err, out)
	}
}
