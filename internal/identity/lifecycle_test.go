package identity

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/store"
)

func TestSweepAccounts(t *testing.T) {
	st, err := store.OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	add := func(name, kind, sponsor string, created, lastLogin, expires time.Time) {
		t.Helper()
		if err := st.AddUser(ctx, store.User{Name: name, Kind: kind, Sponsor: sponsor, Role: "r", Verifier: "v", Created: created, Expires: expires, CreatedBy: "t"}); err != nil {
			t.Fatal(err)
		}
		if !lastLogin.IsZero() {
			st.TouchLogin(ctx, name, lastLogin)
		}
	}
	add("active", store.KindEmployee, "", now.Add(-200*day), now.Add(-3*day), now.Add(100*day))
	add("sleeper", store.KindEmployee, "", now.Add(-200*day), now.Add(-91*day), now.Add(100*day))
	add("never", store.KindEmployee, "", now.Add(-95*day), time.Time{}, now.Add(100*day))
	add("newcomer", store.KindEmployee, "", now.Add(-5*day), time.Time{}, now.Add(100*day))
	add("glass", store.KindEmployee, "", now.Add(-300*day), time.Time{}, now.Add(100*day))
	add("ext", store.KindContractor, "active", now.Add(-20*day), now.Add(-1*day), now.Add(10*day))

	rec := &recorder{}
	sw, err := SweepAccounts(ctx, st, rec, now, 90*day, 14*day, []string{"glass"})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(sw.Disabled)
	if !slices.Equal(sw.Disabled, []string{"never", "sleeper"}) {
		t.Fatalf("disabled %v, want [never sleeper]", sw.Disabled)
	}
	if !slices.Equal(sw.Warned, []string{"ext"}) {
		t.Fatalf("warned %v, want [ext]", sw.Warned)
	}
	u, _ := st.User(ctx, "sleeper")
	if !u.Disabled || !strings.Contains(u.DisabledReason, "dormant: no login since 2026-08-23") || u.UpdatedBy != SweepActor {
		t.Fatalf("sleeper: %+v", u)
	}
	var alert *audit.Event
	for i, e := range rec.events {
		if e.Type == audit.AccountExpiring {
			alert = &rec.events[i]
		}
	}
	if alert == nil || alert.User != "ext" || !strings.Contains(alert.Reason, "alert to active") {
		t.Fatalf("expiry alert: %+v", alert)
	}
	// A second sweep repeats nothing: one alert per expiry.
	sw, err = SweepAccounts(ctx, st, rec, now.Add(time.Hour), 90*day, 14*day, []string{"glass"})
	if err != nil || len(sw.Disabled)+len(sw.Warned) != 0 {
		t.Fatalf("second sweep: %+v %v", sw, err)
	}
	// Extending the account re-arms the alert for the new expiry.
	st.UpdateUser(ctx, "ext", func(u *store.User) error { u.Expires = now.Add(12 * day); return nil })
	if sw, _ = SweepAccounts(ctx, st, rec, now.Add(2*time.Hour), 90*day, 14*day, nil); !slices.Equal(sw.Warned, []string{"ext"}) {
		t.Fatalf("after extension: %+v", sw)
	}
}

type recorder struct{ events []audit.Event }

func (r *recorder) Record(e audit.Event) error { r.events = append(r.events, e); return nil }
