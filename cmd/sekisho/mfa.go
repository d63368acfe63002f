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

	"rsc.io/qr"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/store"
)

// cmdUserMFA enrols (or replaces) an account's TOTP second factor: it
// prints the otpauth:// URI and a QR code for an authenticator app. The
// account's access credentials are revoked: whoever held the old factor
// must log in again.
func cmdUserMFA(args []string) error {
	fs := flag.NewFlagSet("user mfa", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	noQR := fs.Bool("no-qr", false, "print only the otpauth:// URI")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"user mfa: give exactly one user name"}
	}
	a, err := openAdmin(*cfgPath)
	if err != nil {
		return err
	}
	defer a.close()
	secret, err := identity.NewTOTPSecret()
	if err != nil {
		return err
	}
	who := actor()
	ctx := context.Background()
	u, err := a.st.UpdateUser(ctx, pos[0], func(u *store.User) error {
		u.TOTPSecret, u.TOTPLastStep = secret, identity.TOTPStep(time.Now())-3
		u.Updated, u.UpdatedBy = time.Now().UTC(), who
		return nil
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return hintError{err, "'sekisho user list' shows the accounts"}
		}
		return err
	}
	n, err := a.st.RevokeCredentials(ctx, u.Name)
	if err != nil {
		return err
	}
	if err := a.au.Record(audit.Event{Type: audit.MFAEnrolled, User: u.Name, Role: u.Role, Actor: who,
		Reason: fmt.Sprintf("totp enrolled; %d access credentials revoked", n)}); err != nil {
		return err
	}
	uri := identity.OTPAuthURI(a.cfg.Login.Issuer, u.Name, secret)
	fmt.Printf("TOTP enrolled for %s. Add it to an authenticator app (shown once):\n\n%s\n\n", u.Name, uri)
	if !*noQR {
		code, err := qr.Encode(uri, qr.M)
		if err != nil {
			return err
		}
		fmt.Print(terminalQR(code))
	}
	if r, ok := a.cfg.Role(u.Role); ok && !r.MFA {
		fmt.Fprintf(os.Stderr, "sekisho: note: role %s does not require MFA (mfa: true), so its password still opens sessions directly\n", u.Role)
	}
	return nil
}

// terminalQR draws a QR code with Unicode half blocks, two modules per
// character row, light modules drawn (as qrencode -t UTF8 does), with the
// quiet zone the standard asks for.
func terminalQR(c *qr.Code) string {
	const quiet = 4
	dark := func(x, y int) bool {
		if x < 0 || y < 0 || x >= c.Size || y >= c.Size {
			return false
		}
		return c.Black(x, y)
	}
	var b strings.Builder
	for y := -quiet; y < c.Size+quiet; y += 2 {
		for x := -quiet; x < c.Size+quiet; x++ {
			top, bottom := !dark(x, y), !dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
