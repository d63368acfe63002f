package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSQLiteUsers(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSQLite(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	exp := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	u := User{Name: "alice", Role: "analyst", Verifier: "SCRAM-SHA-256$4096:x$y:z", Expires: exp, Created: exp.Add(-time.Hour), CreatedBy: "root"}
	if err := s.AddUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, u); !errors.Is(err, ErrExists) {
		t.Fatalf("second add: err = %v, want ErrExists", err)
	}
	got, err := s.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != "analyst" || !got.Expires.Equal(exp) || got.CreatedBy != "root" {
		t.Fatalf("got %+v", got)
	}
	if _, err := s.User(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing user: err = %v", err)
	}
	if err := s.SetVerifier(ctx, "bob", "v"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("set verifier of missing user: err = %v", err)
	}
	if err := s.SetVerifier(ctx, "alice", "new"); err != nil {
		t.Fatal(err)
	}
	all, err := s.Users(ctx)
	if err != nil || len(all) != 1 || all[0].Verifier != "new" {
		t.Fatalf("users = %+v, %v", all, err)
	}
	if !got.Expired(exp) || got.Expired(exp.Add(-time.Second)) {
		t.Fatal("Expired is wrong at the boundary")
	}
	fi, err := os.Stat(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state.db mode %v, want 0600", fi.Mode().Perm())
	}
	// UpdateUser changes what the function changes, atomically.
	upd, err := s.UpdateUser(ctx, "alice", func(u *User) error {
		u.Disabled, u.DisabledReason, u.UpdatedBy = true, "left the project", "root"
		return nil
	})
	if err != nil || !upd.Disabled {
		t.Fatalf("update: %+v %v", upd, err)
	}
	again, _ := s.User(ctx, "alice")
	if !again.Disabled || again.DisabledReason != "left the project" || again.Kind != KindEmployee || again.Verifier != "new" {
		t.Fatalf("after update: %+v", again)
	}
	if _, err := s.UpdateUser(ctx, "alice", func(*User) error { return errors.New("no") }); err == nil {
		t.Fatal("a failing change was reported as stored")
	}
	if _, err := s.UpdateUser(ctx, "nobody", func(*User) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	if !again.LastLogin.IsZero() {
		t.Fatal("a new account has a last login")
	}
	login := exp.Add(-time.Minute)
	if err := s.TouchLogin(ctx, "alice", login); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.User(ctx, "alice"); !got.LastLogin.Equal(login) {
		t.Fatalf("last login %v, want %v", got.LastLogin, login)
	}

	calls := 0
	gen := func() ([]byte, error) { calls++; return []byte{byte(calls)}, nil }
	a, _ := s.Secret(ctx, "k", gen)
	b, _ := s.Secret(ctx, "k", gen)
	if string(a) != string(b) || calls != 1 {
		t.Fatalf("secret not stable: %v %v calls=%d", a, b, calls)
	}
}

func TestLoginFailuresAndLocks(t *testing.T) {
	s, err := OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	for i := 1; i <= 3; i++ {
		n, err := s.LoginFailure(ctx, "ghost", t0.Add(time.Duration(i)*time.Minute), 15*time.Minute)
		if err != nil || n != i {
			t.Fatalf("failure %d: count %d, %v", i, n, err)
		}
	}
	// Outside the window the old failures no longer count.
	if n, _ := s.LoginFailure(ctx, "ghost", t0.Add(time.Hour), 15*time.Minute); n != 1 {
		t.Fatalf("after the window: count %d, want 1", n)
	}
	if err := s.ClearLoginFailures(ctx, "ghost"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.LoginFailure(ctx, "ghost", t0.Add(time.Hour), 15*time.Minute); n != 1 {
		t.Fatalf("after clear: count %d, want 1", n)
	}
	if u, err := s.LockedUntil(ctx, "ghost"); err != nil || !u.IsZero() {
		t.Fatalf("unlocked name: %v %v", u, err)
	}
	if err := s.Lock(ctx, "ghost", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.LockedUntil(ctx, "ghost"); !u.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("locked until %v", u)
	}
}

func TestCredentialsAndTOTPSteps(t *testing.T) {
	ctx := t.Context()
	s, err := OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.AddUser(ctx, User{Name: "bob", Role: "analyst", Verifier: "v", Expires: now.Add(time.Hour), Created: now, CreatedBy: "root"}); err != nil {
		t.Fatal(err)
	}
	for i, exp := range []time.Duration{time.Hour, -time.Minute, 2 * time.Hour} {
		c := Credential{ID: string(rune('a' + i)), User: "bob", StoredKey: []byte{1}, ServerKey: []byte{2}, Issued: now, Expires: now.Add(exp), Source: "127.0.0.1"}
		if err := s.AddCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := s.Credentials(ctx, "bob", now)
	if err != nil || len(cs) != 2 {
		t.Fatalf("valid credentials: %d %v, want 2", len(cs), err)
	}
	if n, err := s.RevokeCredentials(ctx, "bob"); err != nil || n < 2 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if cs, _ := s.Credentials(ctx, "bob", now); len(cs) != 0 {
		t.Fatalf("%d credentials after revocation", len(cs))
	}
	for _, tc := range []struct {
		step int64
		ok   bool
	}{{100, true}, {100, false}, {99, false}, {101, true}} {
		if ok, err := s.UseTOTPStep(ctx, "bob", tc.step); err != nil || ok != tc.ok {
			t.Fatalf("step %d: %v %v, want %v", tc.step, ok, err, tc.ok)
		}
	}
}
