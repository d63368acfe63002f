package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"rsc.io/qr"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/demodata"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pglocal"
	"github.com/sekisho/sekisho/internal/store"
)

// demoUsers are the accounts the later features are shown with.
var demoUsers = []struct {
	name, role, kind, sponsor string
	life                      time.Duration
}{
	{"admin", "admin", store.KindEmployee, "", 30 * 24 * time.Hour},
	{"analyst", "analyst", store.KindEmployee, "", 90 * 24 * time.Hour},
	{"contractor", "contractor", store.KindContractor, "analyst", 30 * 24 * time.Hour},
}

func cmdDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "127.0.0.1:6432", "gateway address (loopback); a free port is used if it is taken")
	hcpRows := fs.Int("hcp-rows", demodata.HCPRows, "rows in hcp")
	caseRows := fs.Int("case-rows", demodata.CaseRows, "rows in cases")
	plaintext := fs.Bool("allow-plaintext", false, "also accept clients without TLS (loopback only; for benchmarks)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d, err := setupDemo(ctx, *listen, *hcpRows, *caseRows, *plaintext)
	if d != nil {
		defer d.teardown()
	}
	if err != nil {
		return err
	}
	d.printHowToConnect(os.Stdout)
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "\nsekisho: stopping the demo and removing", d.dir)
	case err := <-d.gw.served:
		return err
	}
	return nil
}

type demo struct {
	dir       string
	cluster   *pglocal.Cluster
	gw        *gateway
	cfgPath   string
	passwords map[string]string
	totp      map[string]string // TOTP secrets of MFA users
}

// setupDemo builds everything; on error the caller still tears down what
// was made.
func setupDemo(ctx context.Context, listen string, hcpRows, caseRows int, plaintext bool) (*demo, error) {
	dir, err := os.MkdirTemp("", "sekisho-demo-")
	if err != nil {
		return nil, err
	}
	d := &demo{dir: dir, passwords: map[string]string{}, totp: map[string]string{}}
	fmt.Fprintln(os.Stderr, "sekisho: starting a throwaway PostgreSQL")
	d.cluster, err = pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		return d, hintError{err, "install the PostgreSQL server (apt-get install postgresql-15), or set PG_BIN"}
	}
	gwPassword := rand.Text()
	conn, err := pgconn.Connect(ctx, d.cluster.ConnString("postgres"))
	if err != nil {
		return d, err
	}
	defer conn.Close(context.Background())
	// The gateway's own role: not a superuser, and the only login that
	// the gateway uses. Users never learn its password.
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE sekisho_gateway LOGIN PASSWORD '%s'", gwPassword),
		"CREATE DATABASE pharma OWNER sekisho_gateway",
		"CREATE DATABASE registry OWNER sekisho_gateway",
	} {
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			return d, fmt.Errorf("demo setup: %w", err)
		}
	}
	start := time.Now()
	fmt.Fprintf(os.Stderr, "sekisho: loading %d healthcare professionals and %d clinical cases (synthetic)\n", hcpRows, caseRows)
	for _, db := range []struct {
		name       string
		hcp, cases int
	}{{"pharma", hcpRows, 0}, {"registry", 0, caseRows}} {
		c, err := pgconn.Connect(ctx, d.cluster.ConnString(db.name))
		if err != nil {
			return d, err
		}
		_, err = c.Exec(ctx, "SET ROLE sekisho_gateway").ReadAll()
		if err == nil {
			err = demodata.Load(ctx, c, db.hcp, db.cases)
		}
		c.Close(context.Background())
		if err != nil {
			return d, err
		}
	}
	fmt.Fprintf(os.Stderr, "sekisho: data loaded in %.1fs\n", time.Since(start).Seconds())

	pwFile := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pwFile, []byte(gwPassword+"\n"), 0o600); err != nil {
		return d, err
	}
	if ln, err := net.Listen("tcp", listen); err == nil {
		ln.Close()
	} else {
		p, perr := pglocal.FreePort()
		if perr != nil {
			return d, perr
		}
		listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	loginPort, err := pglocal.FreePort()
	if err != nil {
		return d, err
	}
	cfgText := fmt.Sprintf(`# sekisho demo config (throwaway)
state_dir: state
listen:
  address: %s
  allow_plaintext: %t
login:
  address: 127.0.0.1:`+strconv.Itoa(loginPort)+`   # the login API for roles with MFA
contact: the demo administrator
# The company network is loopback here. Contractors work office hours.
roles:
  admin:
    networks: [127.0.0.0/8, "::1"]
    databases: ["*"]
    mfa: true            # privileged: password + TOTP at the login API, then a short-lived credential
    credential_lifetime: 2h
    statements: [all]
    read: ["*"]
    write: ["*"]
    functions: ["*"]
    features: [all]
    protected: {name: allow, date_of_birth: allow, sex: allow, email: allow, address: allow,
                institution: allow, diagnosis: allow, treatment: allow}
  analyst:
    networks: [127.0.0.0/8, "::1"]
    databases: [pharma, registry]
    statements: [read, transaction, session]
    read: [public.hcp, public.cases]
    protected:
      name: {mask: pseudonym}
      date_of_birth: {mask: year_only}
      email: {mask: partial_email}
      address: {mask: redact}
      sex: allow
      institution: allow
      diagnosis: allow
      treatment: allow
  contractor:
    networks: [127.0.0.0/8, "::1"]
    databases: [pharma]
    hours: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "20:00", zone: Asia/Tokyo}
    mfa: true            # password + TOTP at the login API, then a short-lived credential
    credential_lifetime: 8h
    statements: [read, transaction, session]
    read: [public.hcp]
    protected:
      name: {mask: redact}
      email: {mask: partial_email}
      institution: allow
      # date_of_birth, address and sex have no rule: denied.
# The data classification: which tables are about people, and what kind
# of personal data each protected column holds.
subjects:
  - database: pharma
    table: public.hcp
    key: id
    columns: {name: name, name_kana: name, birth_date: date_of_birth, sex: sex, email: email,
              institution: institution, institution_address: address}
  - database: registry
    table: public.cases
    key: id
    columns: {diagnosis_code: diagnosis, treatment: treatment, institution: institution}
account_lifetime: {employee: 365d, contractor: 90d, service: 365d}
limits:
  idle_timeout: 30m
  shutdown_timeout: 2s
upstreams:
  - database: pharma
    host: %s
    port: %d
    user: sekisho_gateway
    password_file: upstream.pw
    tls: disable
  - database: registry
    host: %s
    port: %d
    user: sekisho_gateway
    password_file: upstream.pw
    tls: disable
`, listen, plaintext, d.cluster.Host, d.cluster.Port, d.cluster.Host, d.cluster.Port)
	d.cfgPath = filepath.Join(dir, "sekisho.yaml")
	if err := os.WriteFile(d.cfgPath, []byte(cfgText), 0o600); err != nil {
		return d, err
	}
	cfg, err := config.Load(d.cfgPath)
	if err != nil {
		return d, err
	}
	st, err := store.OpenSQLite(cfg.StateDir)
	if err != nil {
		return d, err
	}
	now := time.Now()
	for _, u := range demoUsers {
		pw := rand.Text()
		v, err := identity.NewVerifier(pw)
		if err != nil {
			st.Close()
			return d, err
		}
		ph, err := identity.HashPassword(pw)
		if err != nil {
			st.Close()
			return d, err
		}
		user := store.User{Name: u.name, Kind: u.kind, Sponsor: u.sponsor, Role: u.role, Verifier: v, PasswordHash: ph,
			Expires: now.Add(u.life).UTC(), Created: now.UTC(), CreatedBy: "demo"}
		if r, ok := cfg.Role(u.role); ok && r.MFA {
			if user.TOTPSecret, err = identity.NewTOTPSecret(); err != nil {
				st.Close()
				return d, err
			}
			d.totp[u.name] = user.TOTPSecret
		}
		if err := st.AddUser(ctx, user); err != nil {
			st.Close()
			return d, err
		}
		d.passwords[u.name] = pw
	}
	st.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d.gw, err = startGateway(ctx, cfg, log)
	if err != nil {
		return d, err
	}
	return d, nil
}

func (d *demo) printHowToConnect(w io.Writer) {
	ca := d.gw.caPath
	addr := d.gw.ln.Addr().(*net.TCPAddr)
	fmt.Fprintf(w, "\nsekisho demo is running.\n\n")
	fmt.Fprintf(w, "  gateway     %s (TLS required; CA certificate %s)\n", addr, ca)
	fmt.Fprintf(w, "  PostgreSQL  127.0.0.1:%d (throwaway; only the gateway has its credentials)\n", d.cluster.Port)
	fmt.Fprintf(w, "  databases   pharma (table hcp: %s), registry (table cases)\n", "healthcare professionals")
	fmt.Fprintf(w, "  config      %s\n  audit log   %s\n\n", d.cfgPath, d.gw.cfg.Audit.Path)
	fmt.Fprintf(w, "  roles       every role only from loopback (the demo's company network);\n")
	fmt.Fprintf(w, "              admin: everything, with MFA and 2-hour credentials\n")
	fmt.Fprintf(w, "              analyst: sees names as pseudonyms, e-mail as k***@..., birth dates as years\n")
	fmt.Fprintf(w, "              contractor: pharma only, weekdays 08:00-20:00 Asia/Tokyo, MFA; no birth dates or addresses\n\n")
	self, err := os.Executable()
	if err != nil {
		self = "sekisho"
	}
	for _, u := range demoUsers {
		if secret, ok := d.totp[u.name]; ok {
			uri := identity.OTPAuthURI(d.gw.cfg.Login.Issuer, u.name, secret)
			fmt.Fprintf(w, "Connect as %s (role %s, MFA: its password alone opens nothing):\n", u.name, u.role)
			fmt.Fprintf(w, "  1. add this to an authenticator app: %s\n", uri)
			if code, err := qr.Encode(uri, qr.M); err == nil {
				fmt.Fprint(w, terminalQR(code))
			}
			fmt.Fprintf(w, "  2. %s login --url https://%s --ca %s --user %s    (password: %s, then the app's code)\n",
				self, d.gw.cfg.Login.Address, ca, u.name, d.passwords[u.name])
			fmt.Fprintf(w, "  3. %s psql -d pharma         (or '%s tunnel' for a GUI tool on 127.0.0.1:15432)\n", self, self)
			fmt.Fprintf(w, "     (sekisho login saves the credential in the runtime directory; one login serves both)\n\n")
			continue
		}
		fmt.Fprintf(w, "Connect as %s (role %s):\n", u.name, u.role)
		fmt.Fprintf(w, "psql \"postgresql://%s:%s@%s:%d/pharma?sslmode=verify-full&sslrootcert=%s\"\n\n", u.name, d.passwords[u.name], addr.IP, addr.Port, ca)
	}
	fmt.Fprintf(w, "Manage accounts:  %s user list --config %s\n", self, d.cfgPath)
	fmt.Fprintf(w, "Suspend one (its sessions end at once):\n  %s user suspend contractor --reason \"demo\" --config %s\n", self, d.cfgPath)
	fmt.Fprintf(w, "Watch the audit:  tail -f %s\n\n", d.gw.cfg.Audit.Path)
	fmt.Fprintf(w, "Press Ctrl-C to stop; the database and every file of the demo are removed.\n")
}

func (d *demo) teardown() {
	if d.gw != nil {
		if err := d.gw.shutdown(); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "sekisho: gateway shutdown:", err)
		}
	}
	d.cluster.Stop()
	os.RemoveAll(d.dir)
}
