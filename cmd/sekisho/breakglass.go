package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/store"
)

// cmdBreakGlass lists the uses of emergency accounts and records their
// review: every use is an alert that someone must look at and sign off.
func cmdBreakGlass(args []string) error {
	if len(args) == 0 {
		return usageError{"breakglass: say list or review"}
	}
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("breakglass list", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfgPath := fs.String("config", "sekisho.yaml", "config file")
		all := fs.Bool("all", false, "also the uses already reviewed")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err.Error()}
		}
		a, err := openAdmin(*cfgPath)
		if err != nil {
			return err
		}
		defer a.close()
		uses, err := a.st.BreakGlassUses(context.Background(), !*all)
		if err != nil {
			return err
		}
		if len(uses) == 0 {
			fmt.Println("no break-glass uses to review")
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSER\tAT\tFROM\tDATABASE\tLOCKED\tREVIEWED")
		for _, u := range uses {
			rev := "NOT YET"
			if !u.ReviewedAt.IsZero() {
				rev = fmt.Sprintf("%s by %s: %s", u.ReviewedAt.Format("2006-01-02"), u.ReviewedBy, u.Note)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%t\t%s\n", u.ID, u.User, u.At.Format("2006-01-02 15:04:05 MST"), u.Source, u.Database, u.Locked, rev)
		}
		return tw.Flush()
	case "review":
		fs := flag.NewFlagSet("breakglass review", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfgPath := fs.String("config", "sekisho.yaml", "config file")
		note := fs.String("note", "", "what was done and why it was justified")
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usageError{"breakglass review: give one use ID ('sekisho breakglass list')"}
		}
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil {
			return usageError{"breakglass review: " + pos[0] + " is not a use ID"}
		}
		if strings.TrimSpace(*note) == "" {
			return hintError{errors.New("breakglass review: --note is required"), "say what was done and why: --note \"restored pharma after the ransomware incident, ticket 1234\""}
		}
		a, err := openAdmin(*cfgPath)
		if err != nil {
			return err
		}
		defer a.close()
		who := actor()
		if err := a.st.ReviewBreakGlassUse(context.Background(), id, who, *note, time.Now()); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return hintError{fmt.Errorf("breakglass review: no unreviewed use %d", id), "'sekisho breakglass list --all' shows them"}
			}
			return err
		}
		if err := a.au.Record(audit.Event{Type: audit.BreakGlass, Actor: who, Reason: fmt.Sprintf("use #%d reviewed: %s", id, *note)}); err != nil {
			return err
		}
		fmt.Printf("break-glass use %d reviewed by %s\n", id, who)
		return nil
	}
	return usageError{fmt.Sprintf("breakglass: unknown subcommand %q", args[0])}
}
