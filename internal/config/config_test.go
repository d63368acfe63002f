package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

const base = `
upstreams:
  - {database: pharma, host: db, user: gw, password_env: PW}
`

func TestRoles(t *testing.T) {
	c, err := Parse([]byte(base+`
roles:
  analyst:
    networks: [10.0.0.0/8, 192.0.2.7, "2001:db8::/32"]
    databases: [pharma]
  night:
    networks: [0.0.0.0/0]
    databases: ["*"]
    hours: {days: [mon, tue], from: "22:00", to: "06:00", zone: Asia/Tokyo}
  nobody: {}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	analyst, _ := c.Role("analyst")
	addrTests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true}, {"192.0.2.7", true}, {"192.0.2.8", false}, {"::ffff:10.9.9.9", true},
		{"2001:db8::1", true}, {"2001:db9::1", false}, {"127.0.0.1", false},
	}
	for _, tt := range addrTests {
		if got := analyst.AllowsAddress(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("analyst from %s: %v, want %v", tt.addr, got, tt.want)
		}
	}
	if !analyst.AllowsDatabase("pharma") || analyst.AllowsDatabase("registry") {
		t.Error("analyst databases")
	}
	nobody, _ := c.Role("nobody")
	if nobody.AllowsAddress(netip.MustParseAddr("127.0.0.1")) || nobody.AllowsDatabase("pharma") {
		t.Error("a role with no rules must allow nothing")
	}
	night, _ := c.Role("night")
	jst := time.FixedZone("JST", 9*3600)
	timeTests := []struct {
		name string
		at   time.Time
		want bool
	}{
		{"monday 23:00", time.Date(2026, 11, 23, 23, 0, 0, 0, jst), true},
		{"tuesday 05:59 (monday's night)", time.Date(2026, 11, 24, 5, 59, 0, 0, jst), true},
		{"wednesday 05:00 (tuesday's night)", time.Date(2026, 11, 25, 5, 0, 0, 0, jst), true},
		{"monday 05:00 (sunday's night)", time.Date(2026, 11, 23, 5, 0, 0, 0, jst), false},
		{"tuesday 06:00", time.Date(2026, 11, 24, 6, 0, 0, 0, jst), false},
		{"wednesday 23:00", time.Date(2026, 11, 25, 23, 0, 0, 0, jst), false},
		{"monday 23:00 JST given in UTC", time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC), true},
	}
	for _, tt := range timeTests {
		if got := night.AllowsTime(tt.at); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if !analyst.AllowsTime(time.Now()) {
		t.Error("a role without hours must allow any time")
	}
	if c.Audit.FlushEvery.D() != 10*time.Millisecond || c.Limits.GCPercent != 400 || c.Limits.BusyPollD() != 200*time.Microsecond {
		t.Errorf("defaults: audit.flush_every %s, limits.gc_percent %d, limits.busy_poll %s", c.Audit.FlushEvery.D(), c.Limits.GCPercent, c.Limits.BusyPollD())
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := Parse([]byte(`
listen: {address: "0.0.0.0:6432", allow_plaintext: true}
roles:
  bad:
    networks: [10.0.0.0/33, "not-an-address"]
    hours: {days: [funday], from: "25:00", to: "8pm"}
account_lifetime: {contractor: 0s, robot: 1d}
limits: {relay: epoll, gc_percent: 5, busy_poll: 2ms}
audit: {flush_every: 2s}
upstreams:
  - {database: pharma, host: db, user: gw, tls: sometimes}
  - {database: pharma, host: db, user: gw, password_env: A, password_file: b}
`), t.TempDir())
	if err == nil {
		t.Fatal("a bad config was accepted")
	}
	for _, want := range []string{
		"allow_plaintext is only allowed on a loopback address",
		`"10.0.0.0/33" is neither a CIDR nor an address`,
		`"not-an-address"`,
		`"funday" is not a day`,
		`hours.from: "25:00"`,
		`hours.to: "8pm"`,
		"hours.zone is required",
		"account_lifetime.contractor must be positive",
		`unknown kind "robot"`,
		`tls "sometimes"`,
		"exactly one of password_file or password_env",
		`"pharma": listed twice`,
		`limits.relay "epoll"`,
		"limits.gc_percent 5",
		"audit.flush_every 2s",
		"limits.busy_poll 2ms",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestSSOConfig(t *testing.T) {
	c, err := Parse([]byte(base+`
login: {address: "gw.example.jp:6433"}
roles: {analyst: {}}
sso:
  issuer: https://idp.example.jp/realms/hospital
  client_id: sekisho
  client_secret_env: SSO_SECRET
  roles: [{group: research, role: analyst}]
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := c.SSO
	if s.RedirectURL != "https://gw.example.jp:6433/v1/sso/callback" || s.UsernameClaim != "preferred_username" || !s.MFARequired() {
		t.Errorf("defaults: %+v", s)
	}
	if r, ok := s.RoleFor([]string{"x", "research"}); !ok || r != "analyst" {
		t.Errorf("RoleFor: %q %v", r, ok)
	}
	if _, ok := s.RoleFor([]string{"Research"}); ok {
		t.Error("groups matched case-insensitively")
	}

	_, err = Parse([]byte(base+`
login: {address: "0.0.0.0:6433"}
roles: {analyst: {}}
sso:
  issuer: http://idp.example.jp
  client_secret_env: A
  client_secret_file: b
  require_mfa: true
  mfa_amr: []
  roles: [{group: "", role: ghost}]
`), t.TempDir())
	if err == nil {
		t.Fatal("a bad sso config was accepted")
	}
	for _, want := range []string{
		`sso.issuer "http://idp.example.jp"`,
		"sso.client_id",
		"at most one of client_secret_file and client_secret_env",
		`sso.redirect_url ""`,
		"sso.roles[0]: group is empty",
		`role "ghost" is not defined`,
		"no sign-in could pass",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestBusyPollOff(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want time.Duration
	}{
		{"limits: {busy_poll: 0s}\n", 0},
		{"limits: {busy_poll: 1ms}\n", time.Millisecond},
		{"limits: {max_sessions: 5}\n", DefaultBusyPoll},
	} {
		c, err := Parse([]byte(base+tt.yaml), t.TempDir())
		if err != nil {
			t.Fatalf("%s: %v", tt.yaml, err)
		}
		if got := c.Limits.BusyPollD(); got != tt.want {
			t.Errorf("%s: limits.busy_poll %s, want %s", tt.yaml, got, tt.want)
		}
	}
}
