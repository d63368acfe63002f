package config

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // time zones work on hosts without tzdata
)

// Role is what a role's accounts may do at the door: from which networks,
// at which hours, to which databases. Everything not allowed is refused:
// a role with no networks admits no one.
type Role struct {
	// Networks are the source addresses allowed, as CIDRs or addresses.
	Networks []string `yaml:"networks"`
	// Databases are the client-facing database names allowed ("*": all).
	Databases []string `yaml:"databases"`
	// Hours, when set, limits connections to days and times of day.
	Hours *Hours `yaml:"hours"`
	// MFA: the role's accounts connect only with an access credential
	// from the login API (password + TOTP); the password alone opens
	// nothing.
	MFA bool `yaml:"mfa"`
	// CredentialLifetime caps its access credentials (0: login's).
	CredentialLifetime Duration `yaml:"credential_lifetime"`
	// RequireDevice: connections must come from an approved managed
	// device (its client certificate from the gateway's device CA), and
	// access credentials work only from the device that logged in.
	RequireDevice bool `yaml:"require_device"`

	// Statements are the statement classes allowed: read, write, ddl,
	// admin, copy, transaction, session (or all).
	Statements []string `yaml:"statements"`
	// Read and Write are the relations the role may read and change:
	// "*", "schema.*", "schema.table" or a bare table name.
	Read  []string `yaml:"read"`
	Write []string `yaml:"write"`
	// Functions are functions allowed beyond the built-in safe list
	// (name, schema.name, or "*" for all).
	Functions []string `yaml:"functions"`
	// Features are dangerous capabilities allowed (copy_program,
	// copy_file, set_role, alter_system, security_setting, do,
	// create_function, load, catalog_values, foreign_data, or all).
	Features []string `yaml:"features"`
	// Protected maps a category (email) or a classified column
	// (hcp.email) to the role's rule: allow, deny or mask: FUNCTION.
	// A protected column without a rule is denied.
	Protected map[string]Rule `yaml:"protected"`
	// FilterOnMasked lets the role compare, sort and group by masked
	// columns (WHERE email = $1). Such answers leak values by oracle, so
	// it is off by default.
	FilterOnMasked bool `yaml:"filter_on_masked"`

	prefixes []netip.Prefix
}

// Hours is a weekly window in a time zone. To before From spans midnight.
type Hours struct {
	Days []string `yaml:"days"` // mon, tue, wed, thu, fri, sat, sun
	From string   `yaml:"from"` // "08:00"
	To   string   `yaml:"to"`   // "20:00"
	Zone string   `yaml:"zone"` // IANA name, for example Asia/Tokyo

	days     map[time.Weekday]bool
	from, to time.Duration
	loc      *time.Location
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// compile checks a role and prepares it for fast checks.
func (r *Role) compile(name string) []error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("roles.%s: "+format, append([]any{name}, a...)...))
	}
	r.prefixes = nil
	for _, n := range r.Networks {
		p, err := parsePrefix(n)
		if err != nil {
			bad("networks: %v", err)
			continue
		}
		r.prefixes = append(r.prefixes, p)
	}
	if h := r.Hours; h != nil {
		h.days = map[time.Weekday]bool{}
		for _, d := range h.Days {
			wd, ok := weekdays[strings.ToLower(d)]
			if !ok {
				bad("hours.days: %q is not a day (use mon, tue, wed, thu, fri, sat, sun)", d)
			}
			h.days[wd] = true
		}
		if len(h.Days) == 0 {
			bad("hours.days: name at least one day")
		}
		var err error
		if h.from, err = clock(h.From); err != nil {
			bad("hours.from: %v", err)
		}
		if h.to, err = clock(h.To); err != nil {
			bad("hours.to: %v", err)
		}
		if h.Zone == "" {
			bad("hours.zone is required (for example Asia/Tokyo)")
		} else if h.loc, err = time.LoadLocation(h.Zone); err != nil {
			bad("hours.zone %q: %v", h.Zone, err)
		}
	}
	return errs
}

// parsePrefix reads a CIDR or a single address.
func parsePrefix(n string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(n); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(n)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an address", n)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day like 08:00", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// AllowsAddress reports whether a client address may connect.
func (r *Role) AllowsAddress(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// AllowsDatabase reports whether the role may connect to a database.
func (r *Role) AllowsDatabase(db string) bool {
	return slices.Contains(r.Databases, db) || slices.Contains(r.Databases, "*")
}

// AllowsTime reports whether the role may connect at t.
func (r *Role) AllowsTime(t time.Time) bool {
	h := r.Hours
	if h == nil {
		return true
	}
	local := t.In(h.loc)
	y, m, d := local.Date()
	midnight := time.Date(y, m, d, 0, 0, 0, 0, h.loc)
	of := local.Sub(midnight)
	if h.from <= h.to {
		return h.days[local.Weekday()] && of >= h.from && of < h.to
	}
	// Overnight: the part after midnight belongs to the previous day.
	if of >= h.from {
		return h.days[local.Weekday()]
	}
	return of < h.to && h.days[(local.Weekday()+6)%7]
}

// Describe says when a role may connect, for refusals.
func (h *Hours) Describe() string {
	var ds []string
	for _, d := range h.Days {
		ds = append(ds, strings.ToLower(d))
	}
	return fmt.Sprintf("%s %s-%s %s", strings.Join(ds, ","), h.From, h.To, h.Zone)
}

// RoleNames returns the configured role names, sorted.
func (c *Config) RoleNames() []string {
	out := make([]string, 0, len(c.Roles))
	for n := range c.Roles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
