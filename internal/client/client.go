package client

import (
	"bufio"
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
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/term"

	"github.com/sekisho/sekisho/internal/loginapi"
	"github.com/sekisho/sekisho/internal/wire"
)

// The client side of MFA: sekisho login exchanges password and TOTP code
// for a short-lived access credential; sekisho psql and sekisho tunnel use
// it. The credential is kept in a file only the user can read, in the
// per-session runtime directory when there is one (a tmpfs that logout
// clears), and is useless after it expires (8 hours by default).

// Program is the command name hints tell the user to run ("sekisho", or
// "sekisho-client" in the client-only build).
var Program = "sekisho"

// SavedCredential is what sekisho login keeps.
type SavedCredential struct {
	Host       string    `json:"host"`
	Port       int       `json:"port"`
	User       string    `json:"user"`
	Credential string    `json:"credential"`
	Expires    time.Time `json:"expires"`
	CAFile     string    `json:"ca_file,omitempty"`
	// DeviceCert and DeviceKey are the managed device's client
	// certificate and key, when the login came from one: the credential
	// works only with them.
	DeviceCert string `json:"device_cert,omitempty"`
	DeviceKey  string `json:"device_key,omitempty"`
}

func defaultCredentialFile() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "sekisho", "credential.json")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "sekisho", "credential.json")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("sekisho-%d", os.Getuid()), "credential.json")
}

func Login(args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	server := fs.String("url", "", "the gateway's login API, https://HOST:PORT")
	user := fs.String("user", os.Getenv("USER"), "account name")
	caFile := fs.String("ca", "", "CA certificate that signed the gateway's certificate (default: system roots)")
	lifetime := fs.String("lifetime", "", "ask for a shorter credential (for example 2h)")
	stdin := fs.Bool("password-stdin", false, "read the password and then the TOTP code from standard input, one per line")
	credFile := fs.String("credential-file", defaultCredentialFile(), "where to keep the credential")
	deviceDir := fs.String("device-dir", defaultDeviceDir(), "the managed device's key and certificate ('sekisho device enroll')")
	sso := fs.Bool("sso", false, "sign in at the organisation's identity provider (single sign-on) in a browser")
	deviceCode := fs.Bool("device-code", false, "with --sso: sign in with a code on another device instead of a browser here")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *deviceCode && !*sso {
		return usageError{"login: --device-code goes with --sso"}
	}
	if *server == "" {
		return usageError{"login: --url https://HOST:PORT of the gateway's login API is required"}
	}
	u, err := url.Parse(*server)
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return usageError{fmt.Sprintf("login: %q is not an https:// URL", *server)}
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return hintError{errors.New("login: refusing to send a password over plain HTTP"), "use https://"}
	}
	var password, code string
	if *sso {
		// No password here: the identity provider asks for it.
	} else if *stdin {
		sc := bufio.NewScanner(os.Stdin)
		for _, dst := range []*string{&password, &code} {
			if !sc.Scan() {
				return hintError{errors.New("login: standard input ended early"), "give the password, then the TOTP code, one per line"}
			}
			*dst = strings.TrimRight(sc.Text(), "\r")
		}
	} else {
		if password, err = prompt("password for "+*user+": ", false); err != nil {
			return err
		}
		if code, err = prompt("code from your authenticator app: ", true); err != nil {
			return err
		}
	}
	client, err := HTTPClient(*caFile)
	if err != nil {
		return err
	}
	// From a managed device the login presents its certificate, and the
	// credential is bound to the device.
	devCert, devID, enrolled, derr := DeviceCertificate(*deviceDir, client)
	usingDevice := enrolled && derr == nil
	if enrolled && derr != nil {
		fmt.Fprintf(os.Stderr, "sekisho: warning: logging in without this machine's device certificate: %v\n", derr)
	}
	if usingDevice {
		// A new client: the certificate must be on a new TLS connection,
		// not on the one that fetched it.
		if client, err = HTTPClient(*caFile); err != nil {
			return err
		}
		client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{devCert}
	}
	base := strings.TrimSuffix(u.String(), "/")
	var lr loginapi.LoginResponse
	if *sso {
		if lr, err = ssoLogin(client, base, *deviceCode, *lifetime); err != nil {
			return err
		}
	} else {
		var status int
		status, err = loginPost(client, base+"/v1/login", loginapi.LoginRequest{User: *user, Password: password, TOTP: code, Lifetime: *lifetime}, &lr, 30*time.Second)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return hintError{errors.New("login: " + lr.Error), lr.Hint}
		}
	}
	abs := ""
	if *caFile != "" {
		abs, _ = filepath.Abs(*caFile)
	}
	saved := SavedCredential{Host: u.Hostname(), Port: lr.Port, User: lr.User, Credential: lr.Credential, Expires: lr.Expires, CAFile: abs}
	if usingDevice {
		d, _ := filepath.Abs(*deviceDir)
		saved.DeviceCert, saved.DeviceKey = filepath.Join(d, "cert.pem"), filepath.Join(d, "key.pem")
		fmt.Printf("the credential is bound to device %s\n", devID)
	}
	if err := WriteCredential(*credFile, saved); err != nil {
		return err
	}
	fmt.Printf("logged in as %s (role %s) until %s\nuse '"+Program+" psql' or '"+Program+" tunnel' to connect\n", lr.User, lr.Role, lr.Expires.Local().Format("2006-01-02 15:04 MST"))
	return nil
}

// loginPost posts v and decodes the JSON answer into out.
func loginPost(client *http.Client, url string, v, out any, timeout time.Duration) (int, error) {
	body, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, hintError{fmt.Errorf("login: %w", err), "check --url (the gateway's login.address) and --ca (the CA that 'sekisho serve' printed)"}
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("login: unexpected answer (HTTP %d)", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// ssoLogin signs in at the identity provider through the gateway: the
// gateway starts the sign-in and gives a handle; the person signs in
// (browser, or a code on another device); the handle collects the
// credential, which never passes through the browser.
func ssoLogin(client *http.Client, base string, deviceCode bool, lifetime string) (loginapi.LoginResponse, error) {
	flow := "browser"
	if deviceCode {
		flow = "device"
	}
	var start loginapi.SSOStartResponse
	status, err := loginPost(client, base+"/v1/sso/start", loginapi.SSOStartRequest{Flow: flow, Lifetime: lifetime}, &start, 30*time.Second)
	if err != nil {
		return loginapi.LoginResponse{}, err
	}
	if status != http.StatusOK {
		return loginapi.LoginResponse{}, hintError{errors.New("login: " + start.Error), start.Hint}
	}
	if deviceCode {
		fmt.Printf("To sign in, open %s on any device and enter the code %s\n", start.VerificationURI, start.UserCode)
		if start.URL != "" {
			fmt.Printf("(or open %s)\n", start.URL)
		}
	} else {
		fmt.Printf("Sign in with your browser: %s\n", start.URL)
		openBrowser(start.URL)
	}
	fmt.Printf("waiting for the sign-in (until %s) ...\n", start.Expires.Local().Format("15:04"))
	for {
		var lr loginapi.LoginResponse
		status, err := loginPost(client, base+"/v1/sso/wait", loginapi.SSOWaitRequest{Handle: start.Handle}, &lr, 60*time.Second)
		if err != nil {
			return lr, err
		}
		switch {
		case status == http.StatusAccepted && lr.Pending:
			continue
		case status != http.StatusOK:
			return lr, hintError{errors.New("login: " + lr.Error), lr.Hint}
		}
		return lr, nil
	}
}

// openBrowser opens url with $BROWSER, or xdg-open on a desktop; on a
// server it does nothing (the URL is printed).
func openBrowser(url string) {
	cmd := os.Getenv("BROWSER")
	if cmd == "" {
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return
		}
		cmd = "xdg-open"
	}
	c := exec.Command(cmd, url)
	if c.Start() == nil {
		go c.Wait()
	}
}

func prompt(label string, echo bool) (string, error) {
	fmt.Fprint(os.Stderr, label)
	if !echo && term.IsTerminal(int(os.Stdin.Fd())) {
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		return string(b), err
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func HTTPClient(caFile string) (*http.Client, error) {
	pool, err := caPool(caFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}, nil
}

// caPool reads the gateway's CA certificate ("" means the system roots).
func caPool(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, hintError{err, "--ca names the gateway's CA certificate file"}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificates", caFile)
	}
	return pool, nil
}

// tlsConfig is how the tunnel reaches the gateway with c: its CA, and the
// device certificate the credential is bound to.
func (c SavedCredential) tlsConfig() (*tls.Config, error) {
	pool, err := caPool(c.CAFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12, RootCAs: pool}
	if c.DeviceCert != "" {
		kp, err := tls.LoadX509KeyPair(c.DeviceCert, c.DeviceKey)
		if err != nil {
			return nil, hintError{fmt.Errorf("device certificate: %w", err), "run '" + Program + " login' again on the managed device"}
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return tc, nil
}

func WriteCredential(path string, c SavedCredential) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readCredential loads the saved credential, refusing one that expired.
func readCredential(path string) (SavedCredential, error) {
	var c SavedCredential
	b, err := os.ReadFile(path)
	if err != nil {
		return c, hintError{errors.New("no access credential: log in first"), "run '" + Program + " login --url https://GATEWAY:PORT'"}
	}
	if err := json.Unmarshal(b, &c); err != nil || c.Credential == "" {
		return c, hintError{fmt.Errorf("%s is not a sekisho credential", path), "run '" + Program + " login' again"}
	}
	if !time.Now().Before(c.Expires) {
		return c, hintError{fmt.Errorf("your access credential expired at %s", c.Expires.Local().Format("15:04 MST")), "run '" + Program + " login' again"}
	}
	return c, nil
}

// credentialEnv is the libpq environment for connecting with c.
func credentialEnv(c SavedCredential) []string {
	env := []string{"PGHOST=" + c.Host, "PGPORT=" + strconv.Itoa(c.Port), "PGUSER=" + c.User,
		"PGPASSWORD=" + c.Credential, "PGSSLMODE=verify-full"}
	if c.CAFile != "" {
		env = append(env, "PGSSLROOTCERT="+c.CAFile)
	}
	if c.DeviceCert != "" {
		env = append(env, "PGSSLCERT="+c.DeviceCert, "PGSSLKEY="+c.DeviceKey)
	}
	return env
}

// Psql runs psql with the credential in its environment only.
func Psql(args []string) error {
	credFile := defaultCredentialFile()
	if len(args) >= 2 && args[0] == "--credential-file" {
		credFile, args = args[1], args[2:]
	}
	c, err := readCredential(credFile)
	if err != nil {
		return err
	}
	bin, err := exec.LookPath("psql")
	if err != nil {
		return hintError{errors.New("psql is not installed"), "install the PostgreSQL client (apt-get install postgresql-client)"}
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(filteredEnv(), credentialEnv(c)...)
	signal.Ignore(syscall.SIGINT) // psql handles Ctrl-C (it cancels the query)
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		return err
	}
	return nil
}

// filteredEnv is the environment without libpq connection settings that
// would override the credential's.
func filteredEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGPASSFILE", "PGSSLMODE", "PGSSLROOTCERT", "PGSERVICE", "PGSERVICEFILE",
			"PGSSLCERT", "PGSSLKEY":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Tunnel listens on a local port for GUI tools: each local connection
// is authenticated to the gateway with the credential and then relayed.
// Only this user's processes should reach the port, so it listens on
// loopback only.
func Tunnel(args []string) error {
	fs := flag.NewFlagSet("tunnel", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "127.0.0.1:15432", "local address (loopback only)")
	credFile := fs.String("credential-file", defaultCredentialFile(), "the credential '"+Program+" login' saved")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !isLoopbackHost(host) {
		return usageError{"tunnel: --listen must be a loopback address: anyone who reaches the port uses your credential"}
	}
	c, err := readCredential(*credFile)
	if err != nil {
		return err
	}
	if _, err := c.tlsConfig(); err != nil {
		return err // say it now, not at the first connection
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return hintError{err, "choose a free port with --listen"}
	}
	defer ln.Close()
	fmt.Printf("tunnel to %s:%d as %s on %s until %s\nconnect your tool to host %s port %s (no password, sslmode disable)\n",
		c.Host, c.Port, c.User, ln.Addr(), c.Expires.Local().Format("15:04 MST"), host, strings.TrimPrefix(ln.Addr().String(), host+":"))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-stop; ln.Close() }()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return nil
		}
		go tunnelConn(conn, c)
	}
}

// tunnelConn serves one local client: startup, then an authenticated
// connection to the gateway, then bytes both ways.
func tunnelConn(local net.Conn, c SavedCredential) {
	defer local.Close()
	_ = local.SetDeadline(time.Now().Add(30 * time.Second))
	var sm *pgproto3.StartupMessage
	for sm == nil {
		msg, err := wire.ReadStartup(local)
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := local.Write([]byte{'N'}); err != nil { // loopback: no TLS needed
				return
			}
		case *pgproto3.CancelRequest:
			tunnelCancel(m, c)
			return
		case *pgproto3.StartupMessage:
			sm = m
		default:
			return
		}
	}
	fail := func(code, msg, hint string) {
		b, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg, Hint: hint}).Encode(nil)
		_, _ = local.Write(b)
	}
	if time.Now().After(c.Expires) {
		fail("28000", "the sekisho access credential expired", "Run '"+Program+" login' again and restart the tunnel.")
		return
	}
	cfg, err := pgconn.ParseConfig("")
	if err != nil {
		return
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Password = c.Host, uint16(c.Port), c.User, c.Credential
	cfg.Database = sm.Parameters["database"]
	if cfg.Database == "" {
		cfg.Database = c.User
	}
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = 15 * time.Second
	cfg.RuntimeParams = map[string]string{}
	for k, v := range sm.Parameters {
		if k != "user" && k != "database" {
			cfg.RuntimeParams[k] = v
		}
	}
	tc, err := c.tlsConfig()
	if err != nil {
		fail("08001", "the tunnel cannot read its CA or device certificate", "Run '"+Program+" login' again.")
		return
	}
	cfg.TLSConfig = tc
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			fail(pe.Code, pe.Message, pe.Hint)
		} else {
			fail("08001", "the tunnel could not reach the sekisho gateway", "Check that the gateway is up; run '"+Program+" login' again if the credential was revoked.")
		}
		return
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return
	}
	hc, err := pc.Hijack()
	if err != nil {
		return
	}
	up := hc.Conn
	defer up.Close()
	var hello []byte
	hello, _ = (&pgproto3.AuthenticationOk{}).Encode(hello)
	for k, v := range hc.ParameterStatuses {
		hello, _ = (&pgproto3.ParameterStatus{Name: k, Value: v}).Encode(hello)
	}
	hello, _ = (&pgproto3.BackendKeyData{ProcessID: hc.PID, SecretKey: hc.SecretKey}).Encode(hello)
	hello, _ = (&pgproto3.ReadyForQuery{TxStatus: hc.TxStatus}).Encode(hello)
	if _, err := local.Write(hello); err != nil {
		return
	}
	_ = local.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, local); done <- struct{}{} }()
	go func() { _, _ = io.Copy(local, up); done <- struct{}{} }()
	<-done
}

// tunnelCancel passes a CancelRequest on to the gateway (over TLS).
func tunnelCancel(m *pgproto3.CancelRequest, c SavedCredential) {
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
	if err != nil {
		return
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	var conn net.Conn = raw
	if _, err := raw.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err == nil {
		var b [1]byte
		if _, err := io.ReadFull(raw, b[:]); err == nil && b[0] == 'S' {
			tc, err := c.tlsConfig()
			if err != nil {
				return
			}
			t := tls.Client(raw, tc)
			if t.Handshake() != nil {
				return
			}
			conn = t
		}
	}
	b, _ := m.Encode(nil)
	_, _ = conn.Write(b)
	_, _ = io.Copy(io.Discard, conn)
}

// Managed devices: enroll runs on the device (its key never leaves it).

func defaultDeviceDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "sekisho", "device")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("sekisho-device-%d", os.Getuid()))
}

func DeviceEnroll(args []string) error {
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
	client, err := HTTPClient(*caFile)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(loginapi.DeviceEnrolRequest{User: *user, Name: *name, PublicKey: base64.StdEncoding.EncodeToString(pub)})
	var resp loginapi.DeviceResponse
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

func postJSON(client *http.Client, url string, body []byte, out *loginapi.DeviceResponse) error {
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

// DeviceCertificate returns this machine's device client certificate,
// fetching it from the gateway once the device was approved; ok is false
// when the machine has no enrolled device.
func DeviceCertificate(dir string, client *http.Client) (cert tls.Certificate, id string, ok bool, err error) {
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
		var dr loginapi.DeviceResponse
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&dr)
		resp.Body.Close()
		if dr.Status != loginapi.DeviceApproved || dr.Certificate == "" {
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

func isLoopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "localhost" || ip != nil && ip.IsLoopback()
}
