package identity

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/store"
)

// SweepActor is how automatic account changes are attributed.
const SweepActor = "sekisho (automatic)"

// Sweep is what the account sweep did.
type Sweep struct {
	Disabled []string // dormant accounts disabled
	Warned   []string // accounts whose coming expiry was alerted
}

// SweepAccounts disables accounts unused for dormantAfter (counting from
// creation when they never logged in) and raises one account.expiring
// alert per expiry that falls within warnBefore, addressed to the sponsor
// of contractor and service accounts. Break-glass accounts are exempt from
// dormancy: they exist to be unused until the day they are needed.
func SweepAccounts(ctx context.Context, st store.Store, au audit.Sink, now time.Time, dormantAfter, warnBefore time.Duration, breakGlass []string) (Sweep, error) {
	var out Sweep
	users, err := st.Users(ctx)
	if err != nil {
		return out, fmt.Errorf("sweep: %w", err)
	}
	for _, u := range users {
		if u.Disabled || u.Expired(now) {
			continue
		}
		last := u.LastLogin
		if last.IsZero() {
			last = u.Created
		}
		if now.Sub(last) > dormantAfter && !slices.Contains(breakGlass, u.Name) {
			reason := fmt.Sprintf("dormant: no login since %s", last.Format(time.DateOnly))
			if _, err := st.UpdateUser(ctx, u.Name, func(x *store.User) error {
				x.Disabled, x.DisabledReason = true, reason+" ("+SweepActor+", "+now.Format(time.DateOnly)+")"
				x.Updated, x.UpdatedBy = now, SweepActor
				return nil
			}); err != nil {
				return out, fmt.Errorf("sweep %s: %w", u.Name, err)
			}
			if err := au.Record(audit.Event{Time: now, Type: audit.AccountChange, User: u.Name, Role: u.Role, Actor: SweepActor, Reason: "disabled: " + reason}); err != nil {
				return out, err
			}
			out.Disabled = append(out.Disabled, u.Name)
			continue
		}
		if u.Expires.Sub(now) <= warnBefore && !u.ExpiryWarned.Equal(u.Expires) {
			to := u.Sponsor
			if to == "" {
				to = u.Name
			}
			if err := au.Record(audit.Event{Time: now, Type: audit.AccountExpiring, User: u.Name, Role: u.Role, Actor: SweepActor,
				Reason: fmt.Sprintf("expires %s; alert to %s", u.Expires.Format(time.RFC3339), to)}); err != nil {
				return out, err
			}
			if _, err := st.UpdateUser(ctx, u.Name, func(x *store.User) error { x.ExpiryWarned = x.Expires; return nil }); err != nil {
				return out, fmt.Errorf("sweep %s: %w", u.Name, err)
			}
			out.Warned = append(out.Warned, u.Name)
		}
	}
	return out, nil
}
