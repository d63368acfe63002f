// Package store keeps sekisho's mutable state: gateway users and their
// password verifiers (never plaintext), behind an interface so that a
// PostgreSQL store shared by several gateways can use the same schema.
// The embedded implementation is one SQLite file in the state directory.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// ErrNotFound means the named record does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists means a record with that name already exists.
var ErrExists = errors.New("already exists")

// Kinds of account. A contractor or service account has a sponsor: the
// employee answerable for it.
const (
	KindEmployee   = "employee"
	KindContractor = "contractor"
	KindService    = "service"
)

// User is a gateway account. Verifier is a SCRAM-SHA-256 verifier in
// PostgreSQL's format; the password itself is never stored.
type User struct {
	Name      string
	Kind      string
	Sponsor   string
	Role      string
	Verifier  string
	Expires   time.Time
	Created   time.Time
	CreatedBy string
	Disabled  bool
	// DisabledReason says why, and who disabled it, for the record.
	DisabledReason string
	// UpdatedBy names who made the last change.
	Updated   time.Time
	UpdatedBy string
	// LastLogin is the last admitted connection (zero: never).
	LastLogin time.Time
	// ExpiryWarned is the expiry the sponsor was last warned about, so one
	// expiry is warned about once.
	ExpiryWarned time.Time
	// PasswordHash is the argon2id hash checked by the login API (the
	// SCRAM Verifier serves direct password logins of roles without MFA).
	PasswordHash string
	// TOTPSecret is the enrolled second factor (base32; "" when none).
	TOTPSecret string
	// TOTPLastStep is the last TOTP time step accepted: codes of that step
	// or earlier are refused, so a code works once.
	TOTPLastStep int64
	// CertFingerprint is the SHA-256 of a service account's current
	// client certificate ("" when none): only that one authenticates it.
	CertFingerprint string
}

// Credential is a short-lived access credential issued at login. The
// gateway keeps only its SCRAM keys, never the secret.
type Credential struct {
	ID        string
	User      string
	StoredKey []byte
	ServerKey []byte
	Issued    time.Time
	Expires   time.Time
	// Source is the address the login came from.
	Source string
	// Device is the managed device the login came from ("" when none):
	// the credential works only from it.
	Device string
}

// Device is a managed device of a user: enrolled (pending), approved
// (with a client certificate from the device CA) or revoked.
type Device struct {
	ID          string
	User        string
	Name        string
	PublicKey   []byte // PKIX DER
	Fingerprint string
	Status      string // pending, approved, revoked
	CertPEM     string
	Requested   time.Time
	Approved    time.Time
	ApprovedBy  string
	Expires     time.Time
	Source      string
}

// BreakGlassUse is one login of an emergency account, kept until an
// administrator has reviewed it.
type BreakGlassUse struct {
	ID         int64
	User       string
	At         time.Time
	Source     string
	Database   string
	Locked     bool // the gateway was locked at the time
	ReviewedBy string
	ReviewedAt time.Time
	Note       string
}

// Device statuses.
const (
	DevicePending  = "pending"
	DeviceApproved = "approved"
	DeviceRevoked  = "revoked"
)

// Expired reports whether the account is past its expiry at now.
func (u User) Expired(now time.Time) bool { return !now.Before(u.Expires) }

// Store is the state store.
type Store interface {
	AddUser(ctx context.Context, u User) error
	User(ctx context.Context, name string) (User, error)
	Users(ctx context.Context) ([]User, error)
	SetVerifier(ctx context.Context, name, verifier string) error
	// UpdateUser applies change to the named account and stores it, as one
	// transaction.
	UpdateUser(ctx context.Context, name string, change func(*User) error) (User, error)
	// TouchLogin records an admitted connection.
	TouchLogin(ctx context.Context, name string, at time.Time) error
	// LoginFailure records a failed login for a name (whether or not an
	// account has it) and returns the failures within window before at.
	LoginFailure(ctx context.Context, name string, at time.Time, window time.Duration) (int, error)
	// ClearLoginFailures forgets a name's failures (after a good login).
	ClearLoginFailures(ctx context.Context, name string) error
	// SetGatewayLock locks (or unlocks) the whole gateway: while locked only
	// break-glass accounts may connect.
	SetGatewayLock(ctx context.Context, l GatewayLock) error
	// GatewayLock returns the gateway-wide lock.
	GatewayLock(ctx context.Context) (GatewayLock, error)
	// Lock refuses logins for a name until the given time.
	Lock(ctx context.Context, name string, until time.Time) error
	// LockedUntil returns when a name's lock ends (zero: not locked).
	LockedUntil(ctx context.Context, name string) (time.Time, error)
	// AddCredential stores an issued access credential.
	AddCredential(ctx context.Context, c Credential) error
	// Credentials returns a user's credentials that are valid at now.
	Credentials(ctx context.Context, user string, now time.Time) ([]Credential, error)
	// RevokeCredentials deletes every credential of a user and returns
	// how many there were.
	RevokeCredentials(ctx context.Context, user string) (int, error)
	// AddDevice stores an enrolment request.
	AddDevice(ctx context.Context, d Device) error
	// Device returns a device by ID.
	Device(ctx context.Context, id string) (Device, error)
	// Devices lists devices (all users when user is "").
	Devices(ctx context.Context, user string) ([]Device, error)
	// UpdateDevice stores a changed device (approval, revocation).
	UpdateDevice(ctx context.Context, d Device) error
	// RevokeDeviceCredentials deletes the credentials bound to a device.
	RevokeDeviceCredentials(ctx context.Context, device string) (int, error)
	// AddBreakGlassUse records a break-glass login for review.
	AddBreakGlassUse(ctx context.Context, u BreakGlassUse) (int64, error)
	// BreakGlassUses lists break-glass logins (only unreviewed ones when
	// pending is true), oldest first.
	BreakGlassUses(ctx context.Context, pending bool) ([]BreakGlassUse, error)
	// ReviewBreakGlassUse marks one reviewed.
	ReviewBreakGlassUse(ctx context.Context, id int64, by, note string, at time.Time) error
	// UseTOTPStep records that a user's TOTP code of step was used; it
	// reports false (and records nothing) when that step or a later one was
	// used before — a replayed code.
	UseTOTPStep(ctx context.Context, user string, step int64) (bool, error)
	// Secret returns the named gateway secret, creating it with gen on
	// first use (for example the key that makes refusals for unknown users
	// look like refusals for known ones).
	Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)
	Close() error
}

// schema is shared by every implementation; PostgreSQL accepts it as is.
const schema = `
CREATE TABLE IF NOT EXISTS users (
	name            TEXT PRIMARY KEY,
	kind            TEXT NOT NULL DEFAULT 'employee',
	sponsor         TEXT NOT NULL DEFAULT '',
	role            TEXT NOT NULL,
	verifier        TEXT NOT NULL,
	expires         BIGINT NOT NULL,
	created         BIGINT NOT NULL,
	created_by      TEXT NOT NULL,
	disabled        BOOLEAN NOT NULL DEFAULT FALSE,
	disabled_reason TEXT NOT NULL DEFAULT '',
	updated         BIGINT NOT NULL DEFAULT 0,
	updated_by      TEXT NOT NULL DEFAULT '',
	last_login      BIGINT NOT NULL DEFAULT 0,
	expiry_warned   BIGINT NOT NULL DEFAULT 0,
	password_hash   TEXT NOT NULL DEFAULT '',
	totp_secret     TEXT NOT NULL DEFAULT '',
	totp_last_step  BIGINT NOT NULL DEFAULT 0,
	cert_fingerprint TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS login_failures (
	name TEXT NOT NULL,
	at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_name_at ON login_failures (name, at);
CREATE INDEX IF NOT EXISTS login_failures_at ON login_failures (at);
CREATE TABLE IF NOT EXISTS login_locks (
	name  TEXT PRIMARY KEY,
	until BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_lock (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	locked BOOLEAN NOT NULL,
	reason TEXT NOT NULL,
	actor  TEXT NOT NULL,
	at     BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	stored_key BLOB NOT NULL,
	server_key BLOB NOT NULL,
	issued     BIGINT NOT NULL,
	expires    BIGINT NOT NULL,
	source     TEXT NOT NULL,
	device     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS credentials_name ON credentials (name, expires);
CREATE TABLE IF NOT EXISTS devices (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	label       TEXT NOT NULL,
	public_key  BLOB NOT NULL,
	fingerprint TEXT NOT NULL,
	status      TEXT NOT NULL,
	cert_pem    TEXT NOT NULL DEFAULT '',
	requested   BIGINT NOT NULL,
	approved    BIGINT NOT NULL DEFAULT 0,
	approved_by TEXT NOT NULL DEFAULT '',
	expires     BIGINT NOT NULL DEFAULT 0,
	source      TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS break_glass_uses (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	name        TEXT NOT NULL,
	at          BIGINT NOT NULL,
	source      TEXT NOT NULL,
	db          TEXT NOT NULL,
	locked      BOOLEAN NOT NULL,
	reviewed_by TEXT NOT NULL DEFAULT '',
	reviewed_at BIGINT NOT NULL DEFAULT 0,
	note        TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS secrets (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
`

// SQLite is the embedded store.
type SQLite struct {
	db *sql.DB
	// stmts caches prepared statements by their text: every new
	// connection runs several lookups, and SQLite's parsing of each
	// statement would otherwise cost more than the lookup.
	stmts sync.Map // string → *sql.Stmt
}

// stmt returns the prepared statement for q.
func (s *SQLite) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

func (s *SQLite) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := s.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (s *SQLite) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := s.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// rowScanner is *sql.Row, or the error of preparing its statement.
type rowScanner interface{ Scan(...any) error }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (s *SQLite) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	st, err := s.stmt(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// OpenSQLite opens (creating if needed) the store file state.db in dir.
// The directory and file are private to the service user.
func OpenSQLite(dir string) (*SQLite, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, "state.db")
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		f.Close()
	} else {
		return nil, fmt.Errorf("state file: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)")
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("state schema: %w", err)
	}
	return &SQLite{db: db}, nil
}

// AddUser implements Store.
func (s *SQLite) AddUser(ctx context.Context, u User) error {
	if u.Kind == "" {
		u.Kind = KindEmployee
	}
	_, err := s.exec(ctx,
		`INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, userArgs(u)...)
	if err != nil {
		if _, gerr := s.User(ctx, u.Name); gerr == nil {
			return fmt.Errorf("user %q: %w", u.Name, ErrExists)
		}
		return fmt.Errorf("add user: %w", err)
	}
	return nil
}

// User implements Store.
func (s *SQLite) User(ctx context.Context, name string) (User, error) {
	row := s.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE name = ?`, name)
	u, err := scanUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return u, err
}

// Users implements Store.
func (s *SQLite) Users(ctx context.Context) ([]User, error) {
	rows, err := s.query(ctx, `SELECT `+userColumns+` FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// SetVerifier implements Store.
func (s *SQLite) SetVerifier(ctx context.Context, name, verifier string) error {
	res, err := s.exec(ctx, `UPDATE users SET verifier = ? WHERE name = ?`, verifier, name)
	if err != nil {
		return fmt.Errorf("set verifier: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return nil
}

// UpdateUser implements Store.
func (s *SQLite) UpdateUser(ctx context.Context, name string, change func(*User) error) (User, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("update user: %w", err)
	}
	defer tx.Rollback()
	u, err := scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("update user: %w", err)
	}
	if err := change(&u); err != nil {
		return User{}, err
	}
	u.Name = name // the key never changes
	args := append(userArgs(u)[1:], name)
	if _, err := tx.ExecContext(ctx, `UPDATE users SET kind = ?, sponsor = ?, role = ?, verifier = ?, expires = ?, created = ?,
		created_by = ?, disabled = ?, disabled_reason = ?, updated = ?, updated_by = ?, last_login = ?, expiry_warned = ?,
		password_hash = ?, totp_secret = ?, totp_last_step = ?, cert_fingerprint = ? WHERE name = ?`, args...); err != nil {
		return User{}, fmt.Errorf("update user: %w", err)
	}
	return u, tx.Commit()
}

// TouchLogin implements Store.
func (s *SQLite) TouchLogin(ctx context.Context, name string, at time.Time) error {
	if _, err := s.exec(ctx, `UPDATE users SET last_login = ? WHERE name = ?`, at.UnixMicro(), name); err != nil {
		return fmt.Errorf("touch login: %w", err)
	}
	return nil
}

// LoginFailure implements Store. Failures older than the window are
// pruned for every name, so names sprayed by an attacker do not pile up.
func (s *SQLite) LoginFailure(ctx context.Context, name string, at time.Time, window time.Duration) (int, error) {
	since := at.Add(-window).UnixMicro()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("login failure: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM login_failures WHERE at < ?`, since); err != nil {
		return 0, fmt.Errorf("login failure: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO login_failures (name, at) VALUES (?, ?)`, name, at.UnixMicro()); err != nil {
		return 0, fmt.Errorf("login failure: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM login_failures WHERE name = ? AND at >= ?`, name, since).Scan(&n); err != nil {
		return 0, fmt.Errorf("login failure: %w", err)
	}
	return n, tx.Commit()
}

// ClearLoginFailures implements Store.
func (s *SQLite) ClearLoginFailures(ctx context.Context, name string) error {
	// Read first: most logins have nothing to clear, and a read needs no
	// write transaction.
	var any bool
	if err := s.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM login_failures WHERE name = ?)`, name).Scan(&any); err != nil {
		return fmt.Errorf("clear login failures: %w", err)
	}
	if !any {
		return nil
	}
	if _, err := s.exec(ctx, `DELETE FROM login_failures WHERE name = ?`, name); err != nil {
		return fmt.Errorf("clear login failures: %w", err)
	}
	return nil
}

// Lock implements Store.
func (s *SQLite) Lock(ctx context.Context, name string, until time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO login_locks (name, until) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET until = excluded.until`, name, until.UnixMicro())
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// LockedUntil implements Store.
func (s *SQLite) LockedUntil(ctx context.Context, name string) (time.Time, error) {
	var until int64
	err := s.queryRow(ctx, `SELECT until FROM login_locks WHERE name = ?`, name).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("locked until: %w", err)
	}
	return time.UnixMicro(until).UTC(), nil
}

// GatewayLock is the gateway-wide lock ("sekisho lock --all").
type GatewayLock struct {
	Locked bool
	Reason string
	Actor  string
	At     time.Time
}

// SetGatewayLock implements Store.
func (s *SQLite) SetGatewayLock(ctx context.Context, l GatewayLock) error {
	_, err := s.exec(ctx, `INSERT INTO gateway_lock (id, locked, reason, actor, at) VALUES (1, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET locked = excluded.locked, reason = excluded.reason, actor = excluded.actor, at = excluded.at`,
		l.Locked, l.Reason, l.Actor, l.At.UnixMicro())
	if err != nil {
		return fmt.Errorf("gateway lock: %w", err)
	}
	return nil
}

// GatewayLock implements Store.
func (s *SQLite) GatewayLock(ctx context.Context) (GatewayLock, error) {
	var l GatewayLock
	var at int64
	err := s.queryRow(ctx, `SELECT locked, reason, actor, at FROM gateway_lock WHERE id = 1`).Scan(&l.Locked, &l.Reason, &l.Actor, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return GatewayLock{}, nil
	}
	if err != nil {
		return GatewayLock{}, fmt.Errorf("gateway lock: %w", err)
	}
	l.At = time.UnixMicro(at).UTC()
	return l, nil
}

// Secret implements Store.
func (s *SQLite) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	var v []byte
	err := s.queryRow(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	v, err = gen()
	if err != nil {
		return nil, err
	}
	// Another process may have created it meanwhile: keep the first.
	if _, err := s.exec(ctx, `INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, v); err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	if err := s.queryRow(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	return v, nil
}

// AddCredential implements Store.
func (s *SQLite) AddCredential(ctx context.Context, c Credential) error {
	_, err := s.exec(ctx, `INSERT INTO credentials (id, name, stored_key, server_key, issued, expires, source, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.User, c.StoredKey, c.ServerKey, c.Issued.UnixMicro(), c.Expires.UnixMicro(), c.Source, c.Device)
	if err != nil {
		return fmt.Errorf("add credential: %w", err)
	}
	// Expired credentials are useless; drop them as new ones come.
	_, _ = s.exec(ctx, `DELETE FROM credentials WHERE expires < ?`, c.Issued.UnixMicro())
	return nil
}

// Credentials implements Store.
func (s *SQLite) Credentials(ctx context.Context, user string, now time.Time) ([]Credential, error) {
	rows, err := s.query(ctx, `SELECT id, name, stored_key, server_key, issued, expires, source, device FROM credentials
		WHERE name = ? AND expires > ? ORDER BY issued DESC LIMIT 50`, user, now.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	defer rows.Close()
	var out []Credential
	for rows.Next() {
		var c Credential
		var issued, expires int64
		if err := rows.Scan(&c.ID, &c.User, &c.StoredKey, &c.ServerKey, &issued, &expires, &c.Source, &c.Device); err != nil {
			return nil, err
		}
		c.Issued, c.Expires = time.UnixMicro(issued).UTC(), time.UnixMicro(expires).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// RevokeCredentials implements Store.
func (s *SQLite) RevokeCredentials(ctx context.Context, user string) (int, error) {
	r, err := s.exec(ctx, `DELETE FROM credentials WHERE name = ?`, user)
	if err != nil {
		return 0, fmt.Errorf("revoke credentials: %w", err)
	}
	n, _ := r.RowsAffected()
	return int(n), nil
}

const deviceColumns = `id, name, label, public_key, fingerprint, status, cert_pem, requested, approved, approved_by, expires, source`

// AddDevice implements Store.
func (s *SQLite) AddDevice(ctx context.Context, d Device) error {
	_, err := s.exec(ctx, `INSERT INTO devices (`+deviceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.User, d.Name, d.PublicKey, d.Fingerprint, d.Status, d.CertPEM, d.Requested.UnixMicro(), micros(d.Approved), d.ApprovedBy, micros(d.Expires), d.Source)
	if err != nil {
		return fmt.Errorf("add device: %w", err)
	}
	return nil
}

func scanDevice(r scanner) (Device, error) {
	var d Device
	var req, appr, exp int64
	if err := r.Scan(&d.ID, &d.User, &d.Name, &d.PublicKey, &d.Fingerprint, &d.Status, &d.CertPEM, &req, &appr, &d.ApprovedBy, &exp, &d.Source); err != nil {
		return Device{}, err
	}
	d.Requested, d.Approved, d.Expires = time.UnixMicro(req).UTC(), fromMicros(appr), fromMicros(exp)
	return d, nil
}

// Device implements Store.
func (s *SQLite) Device(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(s.queryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, ErrNotFound
	}
	return d, err
}

// Devices implements Store.
func (s *SQLite) Devices(ctx context.Context, user string) ([]Device, error) {
	rows, err := s.query(ctx, `SELECT `+deviceColumns+` FROM devices WHERE ? = '' OR name = ? ORDER BY requested`, user, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// UpdateDevice implements Store.
func (s *SQLite) UpdateDevice(ctx context.Context, d Device) error {
	r, err := s.exec(ctx, `UPDATE devices SET status = ?, cert_pem = ?, approved = ?, approved_by = ?, expires = ? WHERE id = ?`,
		d.Status, d.CertPEM, micros(d.Approved), d.ApprovedBy, micros(d.Expires), d.ID)
	if err != nil {
		return fmt.Errorf("update device: %w", err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// RevokeDeviceCredentials implements Store.
func (s *SQLite) RevokeDeviceCredentials(ctx context.Context, device string) (int, error) {
	r, err := s.exec(ctx, `DELETE FROM credentials WHERE device = ? AND device != ''`, device)
	if err != nil {
		return 0, err
	}
	n, _ := r.RowsAffected()
	return int(n), nil
}

// AddBreakGlassUse implements Store.
func (s *SQLite) AddBreakGlassUse(ctx context.Context, u BreakGlassUse) (int64, error) {
	r, err := s.exec(ctx, `INSERT INTO break_glass_uses (name, at, source, db, locked) VALUES (?, ?, ?, ?, ?)`,
		u.User, u.At.UnixMicro(), u.Source, u.Database, u.Locked)
	if err != nil {
		return 0, fmt.Errorf("break-glass use: %w", err)
	}
	return r.LastInsertId()
}

// BreakGlassUses implements Store.
func (s *SQLite) BreakGlassUses(ctx context.Context, pending bool) ([]BreakGlassUse, error) {
	rows, err := s.query(ctx, `SELECT id, name, at, source, db, locked, reviewed_by, reviewed_at, note FROM break_glass_uses
		WHERE NOT ? OR reviewed_at = 0 ORDER BY id`, pending)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []BreakGlassUse
	for rows.Next() {
		var u BreakGlassUse
		var at, rat int64
		if err := rows.Scan(&u.ID, &u.User, &at, &u.Source, &u.Database, &u.Locked, &u.ReviewedBy, &rat, &u.Note); err != nil {
			return nil, err
		}
		u.At, u.ReviewedAt = time.UnixMicro(at).UTC(), fromMicros(rat)
		out = append(out, u)
	}
	return out, rows.Err()
}

// ReviewBreakGlassUse implements Store.
func (s *SQLite) ReviewBreakGlassUse(ctx context.Context, id int64, by, note string, at time.Time) error {
	r, err := s.exec(ctx, `UPDATE break_glass_uses SET reviewed_by = ?, reviewed_at = ?, note = ? WHERE id = ? AND reviewed_at = 0`,
		by, at.UnixMicro(), note, id)
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// UseTOTPStep implements Store.
func (s *SQLite) UseTOTPStep(ctx context.Context, user string, step int64) (bool, error) {
	r, err := s.exec(ctx, `UPDATE users SET totp_last_step = ? WHERE name = ? AND totp_last_step < ?`, step, user, step)
	if err != nil {
		return false, fmt.Errorf("totp step: %w", err)
	}
	n, _ := r.RowsAffected()
	return n == 1, nil
}

// Close implements Store.
func (s *SQLite) Close() error {
	s.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	return s.db.Close()
}

const userColumns = `name, kind, sponsor, role, verifier, expires, created, created_by, disabled, disabled_reason, updated, updated_by, last_login, expiry_warned, password_hash, totp_secret, totp_last_step, cert_fingerprint`

func userArgs(u User) []any {
	return []any{u.Name, u.Kind, u.Sponsor, u.Role, u.Verifier, u.Expires.UnixMicro(), u.Created.UnixMicro(), u.CreatedBy,
		u.Disabled, u.DisabledReason, micros(u.Updated), u.UpdatedBy, micros(u.LastLogin), micros(u.ExpiryWarned),
		u.PasswordHash, u.TOTPSecret, u.TOTPLastStep, u.CertFingerprint}
}

// micros stores the zero time as 0 ("never").
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

type scanner interface{ Scan(dest ...any) error }

func scanUser(r scanner) (User, error) {
	var u User
	var expires, created, updated, lastLogin, warned int64
	if err := r.Scan(&u.Name, &u.Kind, &u.Sponsor, &u.Role, &u.Verifier, &expires, &created, &u.CreatedBy,
		&u.Disabled, &u.DisabledReason, &updated, &u.UpdatedBy, &lastLogin, &warned,
		&u.PasswordHash, &u.TOTPSecret, &u.TOTPLastStep, &u.CertFingerprint); err != nil {
		return User{}, err
	}
	u.Expires = time.UnixMicro(expires).UTC()
	u.Created = time.UnixMicro(created).UTC()
	u.Updated = fromMicros(updated)
	u.LastLogin = fromMicros(lastLogin)
	u.ExpiryWarned = fromMicros(warned)
	return u, nil
}
