// Package config loads and checks sekisho.yaml: listeners, TLS, limits,
// upstreams and where the audit log goes. The file is reviewed like code,
// so it never holds a secret: upstream passwords are named by file or
// environment variable, never written inline.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole sekisho.yaml.
type Config struct {
	// StateDir holds the state store, the generated CA and the audit log.
	StateDir  string     `yaml:"state_dir"`
	Listen    Listen     `yaml:"listen"`
	Limits    Limits     `yaml:"limits"`
	Login     Login      `yaml:"login"`
	Audit     Audit      `yaml:"audit"`
	Upstreams []Upstream `yaml:"upstreams"`
	// Contact is shown to users in refusals ("ask ..."), for example the
	// security team's address.
	Contact string `yaml:"contact"`
	// Roles are what accounts may be given; an account whose role is not
	// here is refused.
	Roles map[string]*Role `yaml:"roles"`
	// Subjects are the data classification: the tables about people and
	// their protected columns.
	Subjects []Subject `yaml:"subjects"`
	// Policy tunes how the gateway decides statements.
	Policy Policy `yaml:"policy"`
	// DormantAfter disables accounts with no login for this long.
	DormantAfter Duration `yaml:"dormant_after"`
	// ExpiryWarning is how long before an account expires its sponsor (or
	// the account holder, for employees) is alerted.
	ExpiryWarning Duration `yaml:"expiry_warning"`
	// BreakGlass lists the emergency accounts that may still connect while
	// the gateway is locked. Every login of one is an alert to review.
	BreakGlass []string `yaml:"break_glass"`
	// AccountLifetime caps, per kind of account (employee, contractor,
	// service), how far in the future an account may expire.
	AccountLifetime map[string]Duration `yaml:"account_lifetime"`
	// SSO, when set, lets people sign in at an OpenID Connect IdP.
	SSO *SSO `yaml:"sso"`
	// Alerts says where alerts go besides the audit log.
	Alerts Alerts `yaml:"alerts"`
}

// Alerts: events that need a person (an account locked by failed
// logins, a break-glass login, the gateway locked, an account about to
// expire) are posted to Webhook as they happen.
type Alerts struct {
	Webhook string `yaml:"webhook"`
	// SecretFile holds the key of the HMAC-SHA-256 signature of each body
	// (header X-Sekisho-Signature: sha256=HEX).
	SecretFile string `yaml:"secret_file"`
	// CAFile verifies the receiver (default: system roots).
	CAFile string `yaml:"ca_file"`
}

// Secret reads the signing key (nil when none is configured).
func (a Alerts) Secret() ([]byte, error) {
	if a.SecretFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(a.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("alerts.secret_file: %w", err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}

// Policy tunes the statement analysis.
type Policy struct {
	// CatalogRefresh is how often the gateway reloads each upstream's
	// catalog (tables, columns, views) for its analysis.
	CatalogRefresh Duration `yaml:"catalog_refresh"`
	// CatalogCheck is how often the gateway asks each upstream whether
	// its catalog changed (a cheap query over the catalogs' row
	// versions), reloading at once when it did: a view redefined or a
	// table altered outside the gateway is seen within this time.
	CatalogCheck Duration `yaml:"catalog_check"`
}

// Listen is the client-facing listener.
type Listen struct {
	Address string `yaml:"address"`
	TLS     TLS    `yaml:"tls"`
	// AllowPlaintext lets clients connect without TLS. It is refused unless
	// Address is a loopback address.
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// ProxyProtocolFrom lists the load balancers (CIDRs or addresses) whose
	// connections carry a PROXY protocol header with the real client.
	ProxyProtocolFrom []string `yaml:"proxy_protocol_from"`

	proxyPrefixes []netip.Prefix
}

// ProxyPrefixes returns the parsed ProxyProtocolFrom.
func (l Listen) ProxyPrefixes() []netip.Prefix { return l.proxyPrefixes }

// TLS names a certificate and key. When both are empty the gateway makes
// its own CA and server certificate in the state directory.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Hosts are the names and addresses put in a generated certificate.
	Hosts []string `yaml:"hosts"`
}

// Relay modes (limits.relay).
const (
	RelayAuto       = "auto"
	RelayGoroutines = "goroutines"
)

// Limits bound what one client can make the gateway hold or wait for.
type Limits struct {
	MaxMessageBytes int      `yaml:"max_message_bytes"`
	StartupTimeout  Duration `yaml:"startup_timeout"`
	IdleTimeout     Duration `yaml:"idle_timeout"`
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	MaxSessions     int      `yaml:"max_sessions"`
	UpstreamTimeout Duration `yaml:"upstream_connect_timeout"`
	// UpstreamIdleMax is how many upstream connections of ended sessions
	// the gateway keeps in all (reset with DISCARD ALL), for the next
	// session of the same user and role with the same database and
	// startup parameters; the oldest makes room for a newer one. -1 keeps
	// none.
	UpstreamIdleMax int `yaml:"upstream_idle_max"`
	// UpstreamIdleTimeout closes kept upstream connections unused this long.
	UpstreamIdleTimeout Duration `yaml:"upstream_idle_timeout"`
	// Relay is how sessions are relayed: "auto" (sessions without TLS on
	// either side go on an event loop, one thread and one epoll set, the
	// others get a goroutine per direction) or "goroutines" (always).
	Relay string `yaml:"relay"`
	// GCPercent is the Go collector's GOGC: collect when the heap has
	// grown by this percentage since the last collection. The gateway's
	// live heap is small and its garbage is per statement; 400 trades a
	// few tens of MiB for about a tenth less CPU per short statement
	// (bench/RESULTS.md). The environment's GOGC, when set, wins.
	GCPercent int `yaml:"gc_percent"`
	// BusyPoll is how long the event loop keeps polling its sockets
	// before it sleeps, once it has had a processor to spare for ten
	// 1 ms windows in a row (no more sessions active than GOMAXPROCS
	// less one, counting every open session with TLS, none of them
	// streaming a result or a COPY): a lone client's statements and
	// answers are then relayed without waking a sleeping thread (tens
	// of microseconds each on a virtual machine), for at most this much
	// CPU per wait. 0s: never. Unset: DefaultBusyPoll.
	BusyPoll *Duration `yaml:"busy_poll"`
}

// DefaultBusyPoll is limits.busy_poll when the config does not say.
const DefaultBusyPoll = 200 * time.Microsecond

// BusyPollD returns limits.busy_poll (DefaultBusyPoll when unset).
func (l Limits) BusyPollD() time.Duration {
	if l.BusyPoll == nil {
		return DefaultBusyPoll
	}
	return l.BusyPoll.D()
}

// Login bounds password guessing: per account name (whether or not the
// account exists, so lockouts reveal nothing) and per source address.
type Login struct {
	// MaxFailures failed logins for one name within FailureWindow lock
	// that name for Lockout.
	MaxFailures   int      `yaml:"max_failures"`
	FailureWindow Duration `yaml:"failure_window"`
	Lockout       Duration `yaml:"lockout"`
	// FailuresPerAddress failed logins from one address within
	// FailureWindow refuse further attempts from it until the window moves.
	FailuresPerAddress int `yaml:"failures_per_address"`
	// Address is where the login API listens (HTTPS, the listener's
	// certificate): sekisho login exchanges password + TOTP there for an
	// access credential. Empty: no login API.
	Address string `yaml:"address"`
	// CredentialLifetime is how long an access credential is valid unless
	// the role says less.
	CredentialLifetime Duration `yaml:"credential_lifetime"`
	// Issuer names the gateway in authenticator apps.
	Issuer string `yaml:"issuer"`
	// DeviceCertificateLifetime is how long an approved device's client
	// certificate is valid (it is renewed by approving again).
	DeviceCertificateLifetime Duration `yaml:"device_certificate_lifetime"`
}

// Audit says where audit events go.
type Audit struct {
	// Path of the JSON-lines file; relative paths are inside StateDir;
	// "-" means standard output.
	Path string `yaml:"path"`
	// FlushEvery is the longest an event waits in memory before it is
	// written: events gather for this long and go to the file in one
	// write, several sessions' at a time (default 10ms, 1ms to 1s). Each
	// write wakes a thread, and under load that costs the relay more
	// than the events themselves; a shorter time loses fewer events if
	// the gateway's process dies (not the machine: nothing is fsynced).
	FlushEvery Duration `yaml:"flush_every"`
}

// Upstream is one PostgreSQL database behind the gateway.
type Upstream struct {
	// Database is the name clients ask for in their startup message.
	Database string `yaml:"database"`
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	// DBName is the database on the server (defaults to Database).
	DBName string `yaml:"dbname"`
	User   string `yaml:"user"`
	// PasswordFile or PasswordEnv names where the gateway's credential is.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// TLS is disable, require or verify-full.
	TLS    string `yaml:"tls"`
	CAFile string `yaml:"ca_file"`
}

// Duration is a time.Duration written as "30s" or "8h" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses "30s", "8h" or "90d".
func ParseDuration(s string) (Duration, error) {
	v, err := parseDuration(s)
	return Duration(v), err
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// parseDuration accepts Go durations plus a "d" suffix for days.
func parseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		var days int
		if _, err := fmt.Sscanf(s, "%dd", &days); err != nil || days < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q (use for example 30s, 15m, 8h, 90d)", s)
	}
	return v, nil
}

// D returns the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads, defaults and checks a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b, filepath.Dir(path))
}

// Parse decodes a config; relative paths are resolved against baseDir.
func Parse(b []byte, baseDir string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.applyDefaults(baseDir)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) applyDefaults(baseDir string) {
	abs := func(p string) string {
		if p == "" || p == "-" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	if c.StateDir == "" {
		c.StateDir = "state"
	}
	c.StateDir = abs(c.StateDir)
	if c.Listen.Address == "" {
		c.Listen.Address = "127.0.0.1:6432"
	}
	c.Listen.TLS.CertFile = abs(c.Listen.TLS.CertFile)
	c.Listen.TLS.KeyFile = abs(c.Listen.TLS.KeyFile)
	if c.Limits.MaxMessageBytes == 0 {
		c.Limits.MaxMessageBytes = 64 << 20
	}
	if c.Limits.StartupTimeout == 0 {
		c.Limits.StartupTimeout = Duration(10 * time.Second)
	}
	if c.Limits.IdleTimeout == 0 {
		c.Limits.IdleTimeout = Duration(30 * time.Minute)
	}
	if c.Limits.ShutdownTimeout == 0 {
		c.Limits.ShutdownTimeout = Duration(30 * time.Second)
	}
	if c.Limits.MaxSessions == 0 {
		c.Limits.MaxSessions = 1000
	}
	if c.Limits.UpstreamTimeout == 0 {
		c.Limits.UpstreamTimeout = Duration(10 * time.Second)
	}
	if c.Limits.UpstreamIdleMax == 0 {
		c.Limits.UpstreamIdleMax = 20
	}
	if c.Limits.Relay == "" {
		c.Limits.Relay = RelayAuto
	}
	if c.Limits.GCPercent == 0 {
		c.Limits.GCPercent = 400
	}
	if c.Audit.FlushEvery == 0 {
		c.Audit.FlushEvery = Duration(10 * time.Millisecond)
	}
	if c.Limits.UpstreamIdleTimeout == 0 {
		c.Limits.UpstreamIdleTimeout = Duration(time.Minute)
	}
	if c.Policy.CatalogRefresh == 0 {
		c.Policy.CatalogRefresh = Duration(time.Minute)
	}
	if c.Policy.CatalogCheck == 0 {
		c.Policy.CatalogCheck = Duration(2 * time.Second)
	}
	if c.DormantAfter == 0 {
		c.DormantAfter = Duration(90 * 24 * time.Hour)
	}
	if c.ExpiryWarning == 0 {
		c.ExpiryWarning = Duration(14 * 24 * time.Hour)
	}
	if c.Login.MaxFailures == 0 {
		c.Login.MaxFailures = 5
	}
	if c.Login.FailureWindow == 0 {
		c.Login.FailureWindow = Duration(15 * time.Minute)
	}
	if c.Login.Lockout == 0 {
		c.Login.Lockout = Duration(15 * time.Minute)
	}
	if c.Login.FailuresPerAddress == 0 {
		c.Login.FailuresPerAddress = 20
	}
	if c.Login.CredentialLifetime == 0 {
		c.Login.CredentialLifetime = Duration(8 * time.Hour)
	}
	if c.Login.Issuer == "" {
		c.Login.Issuer = "sekisho"
	}
	if c.Login.DeviceCertificateLifetime == 0 {
		c.Login.DeviceCertificateLifetime = Duration(30 * 24 * time.Hour)
	}
	if c.Audit.Path == "" {
		c.Audit.Path = "audit.jsonl"
	}
	if c.Audit.Path != "-" && !filepath.IsAbs(c.Audit.Path) {
		c.Audit.Path = filepath.Join(c.StateDir, c.Audit.Path)
	}
	if c.Contact == "" {
		c.Contact = "your sekisho administrator"
	}
	// Contractors get at most 90 days (the first incident's credentials
	// belonged to a contractor and never expired).
	defaults := map[string]time.Duration{"employee": 365 * 24 * time.Hour, "contractor": 90 * 24 * time.Hour, "service": 365 * 24 * time.Hour}
	if c.AccountLifetime == nil {
		c.AccountLifetime = map[string]Duration{}
	}
	for k, d := range defaults {
		if _, ok := c.AccountLifetime[k]; !ok {
			c.AccountLifetime[k] = Duration(d)
		}
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if u.Port == 0 {
			u.Port = 5432
		}
		if u.DBName == "" {
			u.DBName = u.Database
		}
		if u.TLS == "" {
			u.TLS = "verify-full"
		}
		u.PasswordFile = abs(u.PasswordFile)
		u.CAFile = abs(u.CAFile)
	}
	if c.SSO != nil {
		c.SSO.setDefaults(baseDir, c.Login)
	}
	c.Alerts.SecretFile, c.Alerts.CAFile = abs(c.Alerts.SecretFile), abs(c.Alerts.CAFile)
}

// Validate checks the config and reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	host, _, err := net.SplitHostPort(c.Listen.Address)
	if err != nil {
		bad("listen.address %q: %v", c.Listen.Address, err)
	} else if c.Listen.AllowPlaintext && !isLoopback(host) {
		bad("listen.allow_plaintext is only allowed on a loopback address, not %q: clients elsewhere must use TLS", c.Listen.Address)
	}
	c.Listen.proxyPrefixes = nil
	for _, n := range c.Listen.ProxyProtocolFrom {
		p, err := parsePrefix(n)
		if err != nil {
			bad("listen.proxy_protocol_from: %v", err)
			continue
		}
		c.Listen.proxyPrefixes = append(c.Listen.proxyPrefixes, p)
	}
	if (c.Listen.TLS.CertFile == "") != (c.Listen.TLS.KeyFile == "") {
		bad("listen.tls: give both cert_file and key_file, or neither to let sekisho generate them")
	}
	if c.Limits.MaxMessageBytes < 1<<10 || c.Limits.MaxMessageBytes > 1<<30 {
		bad("limits.max_message_bytes %d: must be between 1024 and 1073741824", c.Limits.MaxMessageBytes)
	}
	if c.Limits.MaxSessions < 1 {
		bad("limits.max_sessions must be at least 1")
	}
	if c.Limits.GCPercent < 25 || c.Limits.GCPercent > 10000 {
		bad("limits.gc_percent %d: give a percentage from 25 to 10000 (default 400)", c.Limits.GCPercent)
	}
	if d := c.Limits.BusyPollD(); d < 0 || d > time.Millisecond {
		bad("limits.busy_poll %s: give a time from 0s (never) to 1ms (default %s)", d, DefaultBusyPoll)
	}
	if d := c.Audit.FlushEvery.D(); d < time.Millisecond || d > time.Second {
		bad("audit.flush_every %s: give a time from 1ms to 1s (default 10ms)", d)
	}
	if c.Limits.Relay != RelayAuto && c.Limits.Relay != RelayGoroutines {
		bad("limits.relay %q: give %q or %q", c.Limits.Relay, RelayAuto, RelayGoroutines)
	}
	if c.Limits.UpstreamIdleMax < -1 {
		bad("limits.upstream_idle_max %d: give a positive number, or -1 to keep no upstream connection for reuse", c.Limits.UpstreamIdleMax)
	}
	if c.Limits.UpstreamIdleTimeout < 0 {
		bad("limits.upstream_idle_timeout must be positive")
	}
	if c.Login.MaxFailures < 1 || c.Login.FailuresPerAddress < 1 {
		bad("login.max_failures and login.failures_per_address must be at least 1")
	}
	if c.Login.CredentialLifetime <= 0 || c.Login.CredentialLifetime.D() > 7*24*time.Hour {
		bad("login.credential_lifetime must be positive and at most 7d: access credentials are short-lived")
	}
	if c.Login.Address != "" {
		if _, _, err := net.SplitHostPort(c.Login.Address); err != nil {
			bad("login.address %q: %v", c.Login.Address, err)
		}
	}
	if len(c.Upstreams) == 0 {
		bad("upstreams: at least one upstream is needed")
	}
	if c.SSO != nil {
		c.SSO.validate(c, bad)
	}
	if c.Alerts.Webhook != "" && !strings.HasPrefix(c.Alerts.Webhook, "https://") {
		bad("alerts.webhook %q: give an https:// URL (alerts name accounts and addresses)", c.Alerts.Webhook)
	}
	if c.Alerts.Webhook == "" && (c.Alerts.SecretFile != "" || c.Alerts.CAFile != "") {
		bad("alerts: secret_file and ca_file need a webhook")
	}
	seen := map[string]bool{}
	for i, u := range c.Upstreams {
		where := fmt.Sprintf("upstreams[%d]", i)
		if u.Database == "" {
			bad("%s.database: the name clients connect to is required", where)
		}
		if seen[u.Database] {
			bad("%s.database %q: listed twice", where, u.Database)
		}
		seen[u.Database] = true
		if u.Host == "" {
			bad("%s.host is required", where)
		}
		if u.User == "" {
			bad("%s.user is required", where)
		}
		if (u.PasswordFile == "") == (u.PasswordEnv == "") {
			bad("%s: name the gateway's upstream password with exactly one of password_file or password_env (never inline)", where)
		}
		switch u.TLS {
		case "disable", "require", "verify-full":
		default:
			bad("%s.tls %q: use disable, require or verify-full", where, u.TLS)
		}
	}
	for kind, d := range c.AccountLifetime {
		switch kind {
		case "employee", "contractor", "service":
		default:
			bad("account_lifetime: unknown kind %q (use employee, contractor, service)", kind)
		}
		if d <= 0 {
			bad("account_lifetime.%s must be positive: every account expires", kind)
		}
	}
	for name, r := range c.Roles {
		if r == nil {
			r = &Role{}
			c.Roles[name] = r
		}
		errs = append(errs, r.compile(name)...)
		errs = append(errs, r.compilePolicy(name, c)...)
	}
	errs = append(errs, c.compileSubjects()...)
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Upstream returns the upstream that serves the client-facing database name.
func (c *Config) Upstream(database string) (Upstream, bool) {
	for _, u := range c.Upstreams {
		if u.Database == database {
			return u, true
		}
	}
	return Upstream{}, false
}

// Role returns a configured role.
func (c *Config) Role(name string) (*Role, bool) {
	r, ok := c.Roles[name]
	return r, ok
}

// Password reads the upstream's password from the file or variable the
// config names. It is never logged.
func (u Upstream) Password() (Secret, error) {
	if u.PasswordEnv != "" {
		v, ok := os.LookupEnv(u.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("upstream %q: environment variable %s is not set", u.Database, u.PasswordEnv)
		}
		return Secret(v), nil
	}
	b, err := os.ReadFile(u.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("upstream %q: password file: %w", u.Database, err)
	}
	return Secret(strings.TrimRight(string(b), "\r\n")), nil
}

// Secret is a string that never prints.
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return "REDACTED" }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return "REDACTED" }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }
