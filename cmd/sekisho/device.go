package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/pki"
	"github.com/sekisho/sekisho/internal/proxy"
	"github.com/sekisho/sekisho/internal/store"
)

// Managed devices: enroll runs on the device (its key never leaves it);
// list, approve and revoke are the administrator's, on the gateway host.

func defaultDeviceDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "sekisho", "device")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("sekisho-device-%d", os.Getuid()))
}

func cmdDevice(args []string) error {
	if len(args) == 0 {
		return usageError{"device: name a subcommand: enroll, list, approve or revoke"}
	}
	switch args[0] {
	case "enroll":
		return cmdDeviceEnroll(args[1:])
	case "list":
		return cmdDeviceList(args[1:])
	case "approve":
		return cmdDeviceDecide(args[1:], true)
	case "revoke":
		return cmdDeviceDecide(args[1:], false)
	}
	return usageError{fmt.Sprintf("device: unknown subcommand %q", args[0])}
}

func cmdDeviceEnroll(args []string) error {
	fs := flag.NewFlagSet("device enroll", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	server := fs.String("url", "", "the gateway's login API, https://HOST:PORT")
	user := fs.String("user", os.Getenv("USER"), "account name")
	name := fs.String("name", "", "a name for this device (for example the asset tag)")
	caFile := fs.String("ca", "", "CA certificate of the gateway's listener")
	dir := fs.String("device-dir", defaultDeviceDir(), "where the device key and certificate are kept")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *server == "" || *name == "" {
		return usageError{"device enroll: --url and --name are required"}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	client, err := httpClient(*caFile)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(proxy.DeviceEnrolRequest{User: *user, Name: *name, PublicKey: base64.StdEncoding.EncodeToString(pub)})
	var resp proxy.DeviceResponse
	if err := postJSON(client, strings.TrimSuffix(*server, "/")+"/v1/devices", body, &resp); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(*dir, "cert.pem"))
	if err := os.WriteFile(filepath.Join(*dir, "device.json"), mustJSON(map[string]string{"id": resp.ID, "url": *server, "user": *user}), 0o600); err != nil {
		return err
	}
	fmt.Printf("device %s enrolled for %s; waiting for approval\nkey fingerprint: %s\n", resp.ID, *user, resp.Fingerprint)
	fmt.Printf("ask your administrator to check the fingerprint and run: sekisho device approve %s\n", resp.ID)
	return nil
}

func mustJSON(v any) []byte {
	b, _ := json.MarshalIndent(v, "", "  ")
	return b
}

func postJSON(client *http.Client, url string, body []byte, out *proxy.DeviceResponse) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return hintError{err, "check --url (the gateway's login.address) and --ca"}
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(out); err != nil {
		return fmt.Errorf("unexpected answer (HTTP %d)", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return hintError{errors.New(out.Error), out.Hint}
	}
	return nil
}

// deviceCertificate returns this machine's device client certificate,
// fetching it from the gateway once the device was approved; ok is false
// when the machine has no enrolled device.
func deviceCertificate(dir string, client *http.Client) (cert tls.Certificate, id string, ok bool, err error) {
	meta, err := os.ReadFile(filepath.Join(dir, "device.json"))
	if err != nil {
		return tls.Certificate{}, "", false, nil
	}
	var m map[string]string
	if err := json.Unmarshal(meta, &m); err != nil {
		return tls.Certificate{}, "", false, fmt.Errorf("%s: %w", dir, err)
	}
	id = m["id"]
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := os.Stat(certPath); err != nil && client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(m["url"], "/")+"/v1/devices/"+id, nil)
		resp, err := client.Do(req)
		if err != nil {
			return tls.Certificate{}, id, true, err
		}
		var dr proxy.DeviceResponse
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&dr)
		resp.Body.Close()
		if dr.Status != store.DeviceApproved || dr.Certificate == "" {
			return tls.Certificate{}, id, true, hintError{fmt.Errorf("device %s is %s", id, orUnknown(dr.Status)), "ask your administrator to approve it: sekisho device approve " + id}
		}
		if err := os.WriteFile(certPath, []byte(dr.Certificate), 0o600); err != nil {
			return tls.Certificate{}, id, true, err
		}
	}
	cert, err = tls.LoadX509KeyPair(certPath, keyPath)
	return cert, id, true, err
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown to the gateway"
	}
	return s
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
