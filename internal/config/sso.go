package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SSO is single sign-on with an OpenID Connect identity provider
// (Keycloak, Entra ID, Okta, ...): 'sekisho login --sso' signs in there,
// in a browser (authorization code with PKCE) or from a terminal (device
// authorization grant), and gets an access credential as after a password
// + TOTP login. The IdP's groups decide the role.
type SSO struct {
	// Issuer is the IdP's issuer URL (https); its discovery document is
	// read from Issuer + "/.well-known/openid-configuration".
	Issuer string `yaml:"issuer"`
	// ClientID is the gateway's client at the IdP; the client secret comes
	// from a file or an environment variable (a public client has none).
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	// RedirectURL is where the browser returns: the login API's
	// /v1/sso/callback (default https://<login.address>/v1/sso/callback
	// when login.address names a host).
	RedirectURL string `yaml:"redirect_url"`
	// CAFile verifies the IdP's certificate (default: system roots).
	CAFile string `yaml:"ca_file"`
	// Scopes asked for besides openid (default: profile, email).
	Scopes []string `yaml:"scopes"`
	// UsernameClaim names the account (default preferred_username);
	// GroupsClaim holds the groups (default groups).
	UsernameClaim string `yaml:"username_claim"`
	GroupsClaim   string `yaml:"groups_claim"`
	// Roles map groups to roles, first match wins; a user in none of
	// them is refused.
	Roles []SSORole `yaml:"roles"`
	// RequireMFA refuses sign-ins whose ID token does not show a second
	// factor (default true). Roles with mfa: true require it regardless.
	RequireMFA *bool `yaml:"require_mfa"`
	// MFAAMR are the amr values (RFC 8176) that show a second factor;
	// MFAACR the acr values that do.
	MFAAMR []string `yaml:"mfa_amr"`
	MFAACR []string `yaml:"mfa_acr"`
	// AccountLifetime is how long an account made by SSO lives after its
	// last sign-in (capped by account_lifetime for employees).
	AccountLifetime Duration `yaml:"account_lifetime"`
}

// SSORole maps one IdP group to a role.
type SSORole struct {
	Group string `yaml:"group"`
	Role  string `yaml:"role"`
}

// MFARequired reports whether every SSO sign-in must show a second factor.
func (s *SSO) MFARequired() bool { return s.RequireMFA == nil || *s.RequireMFA }

// RoleFor returns the role of the first mapping whose group is in groups.
func (s *SSO) RoleFor(groups []string) (string, bool) {
	for _, m := range s.Roles {
		for _, g := range groups {
			if g == m.Group {
				return m.Role, true
			}
		}
	}
	return "", false
}

// ClientSecret reads the client secret ("" for a public client).
func (s *SSO) ClientSecret() (Secret, error) {
	switch {
	case s.ClientSecretEnv != "":
		v, ok := os.LookupEnv(s.ClientSecretEnv)
		if !ok {
			return "", fmt.Errorf("sso: environment variable %s is not set", s.ClientSecretEnv)
		}
		return Secret(v), nil
	case s.ClientSecretFile != "":
		b, err := os.ReadFile(s.ClientSecretFile)
		if err != nil {
			return "", fmt.Errorf("sso: client secret file: %w", err)
		}
		return Secret(strings.TrimRight(string(b), "\r\n")), nil
	}
	return "", nil
}

// defaultMFAAMR are RFC 8176's methods that are, or include, a factor
// beyond a password.
var defaultMFAAMR = []string{"mfa", "otp", "hwk", "swk", "sc", "pop", "fpt", "face", "iris", "retina", "vbm", "sms", "tel"}

func (s *SSO) setDefaults(dir string, login Login) {
	if s.UsernameClaim == "" {
		s.UsernameClaim = "preferred_username"
	}
	if s.GroupsClaim == "" {
		s.GroupsClaim = "groups"
	}
	if s.Scopes == nil {
		s.Scopes = []string{"profile", "email"}
	}
	if s.MFAAMR == nil {
		s.MFAAMR = defaultMFAAMR
	}
	if s.AccountLifetime == 0 {
		s.AccountLifetime = Duration(30 * 24 * time.Hour)
	}
	abs := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			return filepath.Join(dir, p)
		}
		return p
	}
	s.ClientSecretFile, s.CAFile = abs(s.ClientSecretFile), abs(s.CAFile)
	if s.RedirectURL == "" {
		if host, port, err := net.SplitHostPort(login.Address); err == nil && host != "" && !net.ParseIP(host).IsUnspecified() {
			s.RedirectURL = "https://" + net.JoinHostPort(host, port) + "/v1/sso/callback"
		}
	}
}

func (s *SSO) validate(c *Config, bad func(string, ...any)) {
	u, err := url.Parse(s.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		bad("sso.issuer %q: give the IdP's https issuer URL", s.Issuer)
	}
	if s.ClientID == "" {
		bad("sso.client_id: name the gateway's client at the IdP")
	}
	if s.ClientSecretFile != "" && s.ClientSecretEnv != "" {
		bad("sso: give at most one of client_secret_file and client_secret_env")
	}
	if c.Login.Address == "" {
		bad("sso needs login.address: sign-ins go through the login API")
	}
	if r, err := url.Parse(s.RedirectURL); s.RedirectURL == "" || err != nil || r.Scheme != "https" || !strings.HasSuffix(r.Path, "/v1/sso/callback") {
		bad("sso.redirect_url %q: give the https URL of the login API's /v1/sso/callback as the IdP's clients reach it", s.RedirectURL)
	}
	if len(s.Roles) == 0 {
		bad("sso.roles: map at least one IdP group to a role")
	}
	for i, m := range s.Roles {
		if m.Group == "" {
			bad("sso.roles[%d]: group is empty", i)
		}
		if _, ok := c.Roles[m.Role]; !ok {
			bad("sso.roles[%d]: role %q is not defined under roles", i, m.Role)
		}
	}
	if s.AccountLifetime < 0 {
		bad("sso.account_lifetime must be positive")
	}
	if s.MFARequired() && len(s.MFAAMR) == 0 && len(s.MFAACR) == 0 {
		bad("sso.require_mfa is on but mfa_amr and mfa_acr are both empty: no sign-in could pass")
	}
}
