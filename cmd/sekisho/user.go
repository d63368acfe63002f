package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/store"
)

func cmdUser(args []string) error {
	if len(args) == 0 {
		return usageError{"user: name a subcommand: add, list or passwd"}
	}
	switch args[0] {
	case "add":
		return cmdUserAdd(args[1:])
	case "list":
		return cmdUserList(args[1:])
	case "passwd":
		return cmdUserPasswd(args[1:])
	}
	return usageError{fmt.Sprintf("user: unknown subcommand %q", args[0])}
}

// parseInterleaved parses flags that may come before or after the
// positional arguments ("user add NAME --role R" and "user add --role R NAME").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

type adminEnv struct {
	cfg *config.Config
	st  store.Store
	au  *audit.File
}

func openAdmin(cfgPath string) (*adminEnv, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, hintError{err, "pass the gateway's config with --config FILE"}
	}
	st, err := store.OpenSQLite(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	au, err := audit.OpenFile(cfg.Audit.Path)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &adminEnv{cfg: cfg, st: st, au: au}, nil
}

func (a *adminEnv) close() { a.st.Close(); a.au.Close() }

// actor names who runs an admin command, for the audit trail.
func actor() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

func cmdUserAdd(args []string) error {
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	role := fs.String("role", "", "role")
	expires := fs.String("expires", "", "expiry: a date (2026-12-31) or a duration (90d, 8h)")
	stdin := fs.Bool("password-stdin", false, "read the password from standard input")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"user add: give exactly one user name"}
	}
	name := pos[0]
	if err := checkName(name); err != nil {
		return err
	}
	if *role == "" {
		return usageError{"user add: --role is required"}
	}
	if *expires == "" {
		return hintError{errors.New("user add: --expires is required: every account expires"), "give a date (--expires 2026-12-31) or a duration (--expires 90d)"}
	}
	a, err := openAdmin(*cfgPath)
	if err != nil {
		return err
	}
	defer a.close()
	now := time.Now()
	exp, err := parseExpiry(*expires, now)
	if err != nil {
		return err
	}
	if !exp.After(now) {
		return hintError{fmt.Errorf("user add: expiry %s is in the past", exp.Format(time.DateOnly)), "give a future date"}
	}
	if max := a.cfg.MaxAccountLifetime.D(); exp.Sub(now) > max {
		return hintError{fmt.Errorf("user add: expiry %s is beyond the longest account lifetime (%d days)", exp.Format(time.DateOnly), int(max.Hours()/24)),
			"choose an earlier date, or raise max_account_lifetime in the config"}
	}
	if len(a.cfg.Roles) > 0 && !a.cfg.HasRole(*role) {
		return hintError{fmt.Errorf("user add: role %q is not defined", *role), "use one of: " + strings.Join(a.cfg.Roles, ", ")}
	}
	pw, generated, err := readOrMakePassword(*stdin)
	if err != nil {
		return err
	}
	v, err := identity.NewVerifier(pw)
	if err != nil {
		return err
	}
	who := actor()
	u := store.User{Name: name, Role: *role, Verifier: v, Expires: exp.UTC(), Created: now.UTC(), CreatedBy: who}
	if err := a.st.AddUser(context.Background(), u); err != nil {
		if errors.Is(err, store.ErrExists) {
			return hintError{err, "choose another name, or change its password with 'sekisho user passwd'"}
		}
		return err
	}
	if err := a.au.Record(audit.Event{Type: audit.AccountChange, User: name, Role: *role, Actor: who, Reason: "created"}); err != nil {
		return err
	}
	fmt.Printf("added %s (role %s, expires %s)\n", name, *role, exp.UTC().Format("2006-01-02 15:04 MST"))
	if generated {
		fmt.Printf("password: %s\n(shown once; give it to %s over a secure channel)\n", pw, name)
	}
	return nil
}

func cmdUserList(args []string) error {
	fs := flag.NewFlagSet("user list", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	a, err := openAdmin(*cfgPath)
	if err != nil {
		return err
	}
	defer a.close()
	users, err := a.st.Users(context.Background())
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tEXPIRES\tSTATUS\tCREATED BY")
	for _, u := range users {
		status := "active"
		switch {
		case u.Disabled:
			status = "disabled"
		case u.Expired(now):
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, u.Expires.Format(time.DateOnly), status, u.CreatedBy)
	}
	return tw.Flush()
}

func cmdUserPasswd(args []string) error {
	fs := flag.NewFlagSet("user passwd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	stdin := fs.Bool("password-stdin", false, "read the password from standard input")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"user passwd: give exactly one user name"}
	}
	a, err := openAdmin(*cfgPath)
	if err != nil {
		return err
	}
	defer a.close()
	pw, generated, err := readOrMakePassword(*stdin)
	if err != nil {
		return err
	}
	v, err := identity.NewVerifier(pw)
	if err != nil {
		return err
	}
	if err := a.st.SetVerifier(context.Background(), pos[0], v); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return hintError{err, "'sekisho user list' shows the accounts"}
		}
		return err
	}
	if err := a.au.Record(audit.Event{Type: audit.AccountChange, User: pos[0], Actor: actor(), Reason: "password_changed"}); err != nil {
		return err
	}
	fmt.Printf("password changed for %s\n", pos[0])
	if generated {
		fmt.Printf("password: %s\n(shown once)\n", pw)
	}
	return nil
}

func checkName(n string) error {
	if n == "" || len(n) > 63 {
		return usageError{"user name must be 1 to 63 characters"}
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == '@') {
			return usageError{fmt.Sprintf("user name %q: use lowercase letters, digits and _ - . @", n)}
		}
	}
	return nil
}

// parseExpiry reads a date (end of that day, UTC) or a duration from now.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.Add(24*time.Hour - time.Second), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := config.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d.D()), nil
	}
	return time.Time{}, hintError{fmt.Errorf("expiry %q is neither a date nor a duration", s), "use 2026-12-31, 2026-12-31T18:00:00+09:00, 90d or 8h"}
}

// readOrMakePassword reads one line from stdin, or makes a strong password.
func readOrMakePassword(fromStdin bool) (string, bool, error) {
	if fromStdin {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, err
		}
		pw := strings.TrimRight(line, "\r\n")
		if len(pw) < 12 {
			return "", false, hintError{errors.New("password too short"), "use at least 12 characters, or omit --password-stdin to get a generated one"}
		}
		return pw, false, nil
	}
	return generatePassword(), true, nil
}

// generatePassword returns 26 base32 characters (130 bits).
func generatePassword() string { return rand.Text() }
