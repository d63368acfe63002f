package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildsWithoutCgo: the client builds for the laptops people use,
// with no C compiler for them: nothing it imports may need cgo (the SQL
// parser, which does, belongs to the gateway only).
func TestBuildsWithoutCgo(t *testing.T) {
	for _, target := range [][2]string{{"windows", "amd64"}, {"darwin", "arm64"}} {
		out := filepath.Join(t.TempDir(), "sekisho-client")
		cmd := exec.Command("go", "build", "-o", out, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+target[0], "GOARCH="+target[1])
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("GOOS=%s GOARCH=%s CGO_ENABLED=0 go build: %v\n%s", target[0], target[1], err, b)
		}
	}
}

func TestUsage(t *testing.T) {
	if code := run([]string{"bogus"}); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
	if code := run([]string{"device", "approve", "x"}); code != 2 {
		t.Fatalf("device approve on a client: exit %d", code)
	}
	if code := run([]string{"login"}); code != 2 {
		t.Fatalf("login without --url: exit %d", code)
	}
	if !strings.Contains(usage, "--sso") {
		t.Fatal("usage does not mention single sign-on")
	}
}
