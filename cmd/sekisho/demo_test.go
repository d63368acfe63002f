package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/pglocal"
)

// TestDemo runs the README's first command (with a smaller dataset), pastes
// the psql line it prints into a shell, and checks that Ctrl-C removes
// everything.
func TestDemo(t *testing.T) {
	if _, err := pglocal.FindBinDir(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if _, err := exec.LookPath("psql"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	bin := sekishoBinary(t)
	port, err := pglocal.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "demo", "--hcp-rows", "3000", "--case-rows", "500", "--listen", "127.0.0.1:"+strconv.Itoa(port))
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Ctrl-C first: a killed demo could not stop its PostgreSQL.
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var psqlLine, dir string
	timeout := time.After(90 * time.Second)
	for psqlLine == "" || !strings.HasPrefix(psqlLine, "psql ") || dir == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("demo exited before printing a psql line")
			}
			if strings.HasPrefix(l, "psql ") && strings.Contains(l, "analyst") {
				psqlLine = l
			}
			if m := regexp.MustCompile(`config\s+(\S+)/sekisho.yaml`).FindStringSubmatch(l); m != nil {
				dir = m[1]
			}
		case <-timeout:
			t.Fatal("demo did not print how to connect")
		}
	}
	out, err := exec.Command("sh", "-c", psqlLine+` -X -At -c "SELECT count(*) FROM hcp"`).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "3000" {
		t.Fatalf("pasted psql line: %v\n%s", err, out)
	}
	// The analyst sees e-mail addresses partly and birth dates as years.
	out, err = exec.Command("sh", "-c", psqlLine+` -X -At -c "SELECT email, birth_date FROM hcp WHERE id = 1"`).CombinedOutput()
	if err != nil || !regexp.MustCompile(`^.\*\*\*@[a-z.]*example\.(com|jp)\|\d{4}-01-01$`).MatchString(strings.TrimSpace(string(out))) {
		t.Fatalf("masked row through the pasted psql line: %v\n%s", err, out)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo exit after Ctrl-C: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("demo directory %s still exists after Ctrl-C (%v)", dir, err)
	}
}
