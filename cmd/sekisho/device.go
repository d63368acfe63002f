package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/client"
	"github.com/sekisho/sekisho/internal/pki"
	"github.com/sekisho/sekisho/internal/store"
)

// Managed devices: enroll runs on the device (its key never leaves it);
// list, approve and revoke are the administrator's, on the gateway host.

func cmdDevice(args []string) error {
	if len(args) == 0 {
		return usageError{"device: name a subcommand: enroll, list, approve or revoke"}
	}
	switch args[0] {
	case "enroll":
		return client.DeviceEnroll(args[1:])
	case "list":
		return cmdDeviceList(args[1:])
	case "approve":
		return cmdDeviceDecide(args[1:], true)
	case "revoke":
		return cmdDeviceDecide(args[1:], false)
	}
	return usageError{fmt.Sprintf("device: unknown subcommand %q", args[0])}
}

func cmdDeviceList(args []string) error {
	fs := flag.NewFlagSet("device list", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	user := fs.String("user", "", "only this user's devices")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	a, err := openAdmin(*cfgPath)
	if err != nil {
		return err
	}
	defer a.close()
	ds, err := a.st.Devices(context.Background(), *user)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tNAME\tSTATUS\tREQUESTED\tFROM\tCERT EXPIRES\tKEY FINGERPRINT")
	for _, d := range ds {
		exp := "-"
		if !d.Expires.IsZero() {
			exp = d.Expires.Format("2006-01-02")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.User, d.Name, d.Status, d.Requested.Format("2006-01-02 15:04"), d.Source, exp, d.Fingerprint)
	}
	return tw.Flush()
}

// cmdDeviceDecide approves (issuing the device's certificate) or revokes a
// device; revoking also deletes the credentials bound to it.
func cmdDeviceDecide(args []string, approve bool) error {
	verb := map[bool]string{true: "approve", false: "revoke"}[approve]
	fs := flag.NewFlagSet("device "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	fingerprint := fs.String("fingerprint", "", "the key fingerprint the device showed (checked when given)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"device " + verb + ": give exactly one device ID ('sekisho device list' shows them)"}
	}
	a, err := openAdmin(*cfgPath)
	if err != nil {
		return err
	}
	defer a.close()
	ctx := context.Background()
	d, err := a.st.Device(ctx, pos[0])
	if err != nil {
		return hintError{fmt.Errorf("device %s: %w", pos[0], err), "'sekisho device list' shows the devices"}
	}
	who := actor()
	now := time.Now().UTC()
	ev := audit.Event{Type: audit.DeviceEvent, User: d.User, Actor: who}
	if approve {
		if *fingerprint != "" && !strings.EqualFold(*fingerprint, d.Fingerprint) {
			return hintError{fmt.Errorf("device %s: the key fingerprint does not match", d.ID), "do not approve it: the request may not come from the device you think"}
		}
		if d.Status == store.DeviceRevoked {
			return hintError{fmt.Errorf("device %s was revoked", d.ID), "enrol the device again"}
		}
		if _, err := a.st.User(ctx, d.User); err != nil {
			return hintError{fmt.Errorf("device %s: user %q: %w", d.ID, d.User, err), "the device was enrolled for a name without an account; revoke it"}
		}
		ca, err := pki.EnsureDeviceCA(a.cfg.StateDir)
		if err != nil {
			return err
		}
		d.Expires = now.Add(a.cfg.Login.DeviceCertificateLifetime.D())
		certPEM, err := ca.Issue(d.PublicKey, d.User, d.ID, d.Expires)
		if err != nil {
			return err
		}
		d.Status, d.CertPEM, d.Approved, d.ApprovedBy = store.DeviceApproved, string(certPEM), now, who
		ev.Reason = fmt.Sprintf("device %s (%q) approved until %s", d.ID, d.Name, d.Expires.Format(time.DateOnly))
	} else {
		d.Status = store.DeviceRevoked
		n, err := a.st.RevokeDeviceCredentials(ctx, d.ID)
		if err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("device %s (%q) revoked; %d access credentials revoked", d.ID, d.Name, n)
	}
	if err := a.st.UpdateDevice(ctx, d); err != nil {
		return err
	}
	if err := a.au.Record(ev); err != nil {
		return err
	}
	fmt.Println(ev.Reason)
	if !approve {
		// New connections from it are refused already; the running gateway
		// also ends the ones it has open.
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		resp, err := admin.NewClient(a.cfg.StateDir).Do(actx, "/v1/devices/"+d.ID+"/end", admin.Request{SudoUser: os.Getenv("SUDO_USER")})
		switch {
		case errors.Is(err, admin.ErrNotRunning):
			fmt.Println("no running gateway found: no live sessions to end")
		case err != nil:
			return hintError{fmt.Errorf("the device is revoked, but its live sessions were not ended: %w", err), resp.Hint}
		default:
			fmt.Printf("%d live sessions from the device ended\n", resp.SessionsEnded)
		}
	}
	return nil
}

// cmdUserCert issues a service account's client certificate (and key):
// the only way the account authenticates. Issuing a new one ends the old.
func cmdUserCert(args []string) error {
	fs := flag.NewFlagSet("user cert", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	out := fs.String("out", ".", "directory for NAME.crt and NAME.key")
	validity := fs.String("expires", "30d", "how long the certificate is valid (never past the account's expiry)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"user cert: give exactly one service account name"}
	}
	a, err := openAdmin(*cfgPath)
	if err != nil {
		return err
	}
	defer a.close()
	ctx := context.Background()
	u, err := a.st.User(ctx, pos[0])
	if err != nil {
		return hintError{fmt.Errorf("user cert: %s: %w", pos[0], err), "'sekisho user list' shows the accounts"}
	}
	if u.Kind != store.KindService {
		return hintError{fmt.Errorf("user cert: %s is a %s account", u.Name, u.Kind), "client certificates are for service accounts (--kind service); people log in with MFA"}
	}
	d, err := parseExpiry(*validity, time.Now())
	if err != nil {
		return usageError{"user cert: --expires: " + err.Error()}
	}
	notAfter := d
	if u.Expires.Before(notAfter) {
		notAfter = u.Expires
	}
	ca, err := pki.EnsureDeviceCA(a.cfg.StateDir)
	if err != nil {
		return err
	}
	certPEM, keyPEM, fp, err := ca.IssueService(u.Name, notAfter)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(*out, u.Name+".crt"), filepath.Join(*out, u.Name+".key")
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		return err
	}
	who := actor()
	if _, err := a.st.UpdateUser(ctx, u.Name, func(x *store.User) error {
		x.CertFingerprint = fp
		x.Updated, x.UpdatedBy = time.Now().UTC(), who
		return nil
	}); err != nil {
		return err
	}
	if err := a.au.Record(audit.Event{Type: audit.AccountChange, User: u.Name, Role: u.Role, Actor: who,
		Reason: fmt.Sprintf("client certificate issued, valid until %s (sha256 %s); earlier ones no longer authenticate", notAfter.UTC().Format(time.RFC3339), fp[:16])}); err != nil {
		return err
	}
	fmt.Printf("client certificate for %s valid until %s:\n  %s\n  %s (keep it secret; give it to the service over a secure channel)\n", u.Name, notAfter.UTC().Format("2006-01-02 15:04 MST"), certPath, keyPath)
	fmt.Printf("connect with sslcert=%s sslkey=%s sslmode=verify-full (no password)\n", certPath, keyPath)
	return nil
}
