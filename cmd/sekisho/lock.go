package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/store"
)

// cmdLock locks (or unlocks) the whole gateway: only the break-glass
// accounts of the config may connect, and every other live session ends.
func cmdLock(args []string, lock bool) error {
	verb := map[bool]string{true: "lock", false: "unlock"}[lock]
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	all := fs.Bool("all", false, "lock every account except the break-glass ones")
	reason := fs.String("reason", "", "why (shown to refused users and kept in the audit log)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if lock && !*all {
		return usageError{"lock: say --all (every account but the break-glass ones)"}
	}
	if lock && strings.TrimSpace(*reason) == "" {
		return hintError{errors.New("lock: --reason is required"), "say why, for the record and for the users refused: --reason \"ransomware suspected\""}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return hintError{err, "pass the gateway's config with --config FILE"}
	}
	if lock && len(cfg.BreakGlass) == 0 {
		fmt.Fprintln(os.Stderr, "sekisho: warning: no break_glass accounts are configured; nobody will be able to connect")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := admin.NewClient(cfg.StateDir).Do(ctx, "/v1/"+verb, admin.Request{Reason: *reason, SudoUser: os.Getenv("SUDO_USER")})
	if errors.Is(err, admin.ErrNotRunning) {
		fmt.Fprintln(os.Stderr, "sekisho: no running gateway found; changing the state store only")
		err = lockStore(cfg, lock, *reason)
	} else if err != nil {
		return hintError{err, resp.Hint}
	}
	if err != nil {
		return err
	}
	if lock {
		fmt.Printf("sekisho is locked; %d live sessions ended; break-glass accounts: %s\n", resp.SessionsEnded, strings.Join(cfg.BreakGlass, ", "))
	} else {
		fmt.Println("sekisho is unlocked")
	}
	return nil
}

func lockStore(cfg *config.Config, lock bool, reason string) error {
	st, err := store.OpenSQLite(cfg.StateDir)
	if err != nil {
		return err
	}
	defer st.Close()
	au, err := audit.OpenFile(cfg.Audit.Path)
	if err != nil {
		return err
	}
	defer au.Close()
	who := actor()
	if err := st.SetGatewayLock(context.Background(), store.GatewayLock{Locked: lock, Reason: reason, Actor: who, At: time.Now().UTC()}); err != nil {
		return err
	}
	return au.Record(audit.Event{Type: audit.GatewayLock, Actor: who, Outcome: map[bool]string{true: "locked", false: "unlocked"}[lock], Reason: reason})
}
