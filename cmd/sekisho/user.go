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

	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/store"
)

func cmdUser(args []string) error {
	if len(args) == 0 {
		return usageError{"user: name a subcommand: add, list, show, passwd, mfa, cert, extend, suspend, resume, disable or enable"}
	}
	switch args[0] {
	case "add":
		return cmdUserAdd(args[1:])
	case "list":
		return cmdUserList(args[1:])
	case "show":
		return cmdUserShow(args[1:])
	case "passwd":
		return cmdUserPasswd(args[1:])
	case "mfa":
		return cmdUserMFA(args[1:])
	case "cert":
		return cmdUserCert(args[1:])
	case "extend":
		return cmdUserExtend(args[1:])
	case "suspend":
		return cmdUserSuspend(args[1:], true)
	case "resume":
		return cmdUserSuspend(args[1:], false)
	case "disable":
		return cmdUserDisable(args[1:], true)
	case "enable":
		return cmdUserDisable(args[1:], false)
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
	kind := fs.String("kind", store.KindEmployee, "employee, contractor or service")
	sponsor := fs.String("sponsor", "", "the employee answerable for a contractor or service account")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"user add: give exactly one user name"}
	}
	switch *kind {
	case store.KindEmployee:
		if *sponsor != "" {
			return usageError{"user add: --sponsor is for contractor and service accounts"}
		}
	case store.KindContractor, store.KindService:
		if *sponsor == "" {
			return hintError{fmt.Errorf("user add: a %s account needs a sponsor", *kind), "name the employee answerable for it: --sponsor NAME"}
		}
	default:
		return usageError{fmt.Sprintf("user add: --kind %q: use employee, contractor or service", *kind)}
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
	if err := checkExpiry(a.cfg, *kind, exp, now); err != nil {
		return err
	}
	if *sponsor != "" {
		sp, err := a.st.User(context.Background(), *sponsor)
		if err != nil {
			return hintError{fmt.Errorf("user add: sponsor %q: %w", *sponsor, err), "the sponsor must be an existing employee account"}
		}
		if sp.Kind != store.KindEmployee {
			return hintError{fmt.Errorf("user add: sponsor %q is a %s account", *sponsor, sp.Kind), "the sponsor must be an employee"}
		}
	}
	if _, ok := a.cfg.Role(*role); !ok {
		return hintError{fmt.Errorf("user add: role %q is not defined", *role), "use one of: " + strings.Join(a.cfg.RoleNames(), ", ")}
	}
	pw, generated, err := readOrMakePassword(*stdin)
	if err != nil {
		return err
	}
	v, err := identity.NewVerifier(pw)
	if err != nil {
		return err
	}
	ph, err := identity.HashPassword(pw)
	if err != nil {
		return err
	}
	who := actor()
	u := store.User{Name: name, Kind: *kind, Sponsor: *sponsor, Role: *role, Verifier: v, PasswordHash: ph, Expires: exp.UTC(), Created: now.UTC(), CreatedBy: who}
	if err := a.st.AddUser(context.Background(), u); err != nil {
		if errors.Is(err, store.ErrExists) {
			return hintError{err, "choose another name, or change its password with 'sekisho user passwd'"}
		}
		return err
	}
	if err := a.au.Record(audit.Event{Type: audit.AccountChange, User: name, Role: *role, Actor: who, Reason: "created"}); err != nil {
		return err
	}
	fmt.Printf("added %s (%s, role %s, expires %s)\n", name, *kind, *role, exp.UTC().Format("2006-01-02 15:04 MST"))
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
	fmt.Fprintln(tw, "NAME\tKIND\tROLE\tEXPIRES\tSTATUS\tLAST LOGIN\tSPONSOR")
	for _, u := range users {
		status := "active"
		switch {
		case u.Disabled:
			status = "disabled"
		case u.Expired(now):
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, u.Kind, u.Role, u.Expires.Format(time.DateOnly), status, dateOrNever(u.LastLogin), dashIfEmpty(u.Sponsor))
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
	ph, err := identity.HashPassword(pw)
	if err != nil {
		return err
	}
	if _, err := a.st.UpdateUser(context.Background(), pos[0], func(u *store.User) error {
		u.Verifier, u.PasswordHash = v, ph
		u.Updated, u.UpdatedBy = time.Now().UTC(), actor()
		return nil
	}); err != nil {
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

// checkExpiry enforces that an expiry is in the future and within the
// lifetime the config allows for the kind of account.
func checkExpiry(cfg *config.Config, kind string, exp, now time.Time) error {
	if !exp.After(now) {
		return hintError{fmt.Errorf("expiry %s is in the past", exp.Format(time.DateOnly)), "give a future date"}
	}
	if max := cfg.AccountLifetime[kind].D(); exp.Sub(now) > max {
		return hintError{fmt.Errorf("expiry %s is beyond the longest lifetime for %s accounts (%d days)", exp.Format(time.DateOnly), kind, int(max.Hours()/24)),
			"choose an earlier date, or raise account_lifetime." + kind + " in the config"}
	}
	return nil
}

func dateOrNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.DateOnly)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdUserShow(args []string) error {
	fs := flag.NewFlagSet("user show", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"user show: give exactly one user name"}
	}
	a, err := openAdmin(*cfgPath)
	if err != nil {
		return err
	}
	defer a.close()
	u, err := a.st.User(context.Background(), pos[0])
	if err != nil {
		return hintError{err, "'sekisho user list' shows the accounts"}
	}
	status := "active"
	switch {
	case u.Disabled:
		status = "disabled: " + u.DisabledReason
	case u.Expired(time.Now()):
		status = "expired"
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"name", u.Name}, {"kind", u.Kind}, {"sponsor", dashIfEmpty(u.Sponsor)}, {"role", u.Role},
		{"status", status}, {"expires", u.Expires.Format(time.RFC3339)},
		{"created", u.Created.Format(time.RFC3339) + " by " + u.CreatedBy},
		{"last change", changed(u)}, {"last login", dateOrNever(u.LastLogin)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

func changed(u store.User) string {
	if u.Updated.IsZero() {
		return "-"
	}
	return u.Updated.Format(time.RFC3339) + " by " + u.UpdatedBy
}

func cmdUserExtend(args []string) error {
	fs := flag.NewFlagSet("user extend", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	expires := fs.String("expires", "", "new expiry: a date or a duration from now")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *expires == "" {
		return usageError{"user extend: give one user name and --expires"}
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
	who := actor()
	u, err := a.st.UpdateUser(context.Background(), pos[0], func(u *store.User) error {
		if err := checkExpiry(a.cfg, u.Kind, exp, now); err != nil {
			return err
		}
		u.Expires, u.Updated, u.UpdatedBy = exp.UTC(), now.UTC(), who
		return nil
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return hintError{err, "'sekisho user list' shows the accounts"}
		}
		return err
	}
	if err := a.au.Record(audit.Event{Type: audit.AccountChange, User: u.Name, Role: u.Role, Actor: who, Reason: "extended to " + u.Expires.Format(time.RFC3339)}); err != nil {
		return err
	}
	fmt.Printf("%s now expires %s\n", u.Name, u.Expires.Format("2006-01-02 15:04 MST"))
	return nil
}

// cmdUserDisable disables (or enables) an account. New connections are
// refused at once; ending live sessions needs the running gateway's admin
// API, which comes with suspension.
func cmdUserDisable(args []string, disable bool) error {
	verb := map[bool]string{true: "disable", false: "enable"}[disable]
	fs := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	reason := fs.String("reason", "", "why (kept with the account and in the audit log)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"user " + verb + ": give exactly one user name"}
	}
	if disable && strings.TrimSpace(*reason) == "" {
		return hintError{errors.New("user disable: --reason is required"), "say why, for the record: --reason \"contract ended\""}
	}
	a, err := openAdmin(*cfgPath)
	if err != nil {
		return err
	}
	defer a.close()
	who := actor()
	now := time.Now().UTC()
	u, err := a.st.UpdateUser(context.Background(), pos[0], func(u *store.User) error {
		u.Disabled = disable
		u.DisabledReason = ""
		if disable {
			u.DisabledReason = *reason + " (" + who + ", " + now.Format(time.DateOnly) + ")"
		}
		u.Updated, u.UpdatedBy = now, who
		return nil
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return hintError{err, "'sekisho user list' shows the accounts"}
		}
		return err
	}
	ev := audit.Event{Type: audit.AccountChange, User: u.Name, Role: u.Role, Actor: who, Reason: verb + "d"}
	if disable {
		ev.Reason = "disabled: " + *reason
		// Its access credentials end with it: enabling it again does not
		// bring them back.
		if n, err := a.st.RevokeCredentials(context.Background(), u.Name); err != nil {
			return err
		} else if n > 0 {
			ev.Reason += fmt.Sprintf("; %d access credentials revoked", n)
		}
	}
	if err := a.au.Record(ev); err != nil {
		return err
	}
	fmt.Printf("%s is %sd; new connections are %s\n", u.Name, verb, map[bool]string{true: "refused", false: "accepted again"}[disable])
	return nil
}

// cmdUserSuspend suspends (or resumes) an account through the running
// gateway's admin API: new connections are refused and live sessions end
// at once. With no gateway running there are no sessions to end, and the
// account is changed in the state store directly.
func cmdUserSuspend(args []string, suspend bool) error {
	verb := map[bool]string{true: "suspend", false: "resume"}[suspend]
	fs := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	reason := fs.String("reason", "", "why (kept with the account and in the audit log)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"user " + verb + ": give exactly one user name"}
	}
	if suspend && strings.TrimSpace(*reason) == "" {
		return hintError{errors.New("user suspend: --reason is required"), "say why, for the record: --reason \"credentials leaked\""}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return hintError{err, "pass the gateway's config with --config FILE"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := admin.NewClient(cfg.StateDir).Do(ctx, "/v1/users/"+pos[0]+"/"+verb, admin.Request{Reason: *reason, SudoUser: os.Getenv("SUDO_USER")})
	if errors.Is(err, admin.ErrNotRunning) {
		fmt.Fprintln(os.Stderr, "sekisho: no running gateway found; changing the account in the state store only")
		if suspend {
			return cmdUserDisable([]string{pos[0], "--reason", "suspended: " + *reason, "--config", *cfgPath}, true)
		}
		return cmdUserDisable([]string{pos[0], "--config", *cfgPath}, false)
	}
	if err != nil {
		return hintError{err, resp.Hint}
	}
	if suspend {
		fmt.Printf("%s is suspended; %d live sessions ended\n", resp.User, resp.SessionsEnded)
	} else {
		fmt.Printf("%s is resumed; new connections are accepted again\n", resp.User)
	}
	return nil
}
