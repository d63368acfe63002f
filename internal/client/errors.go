// Package client is the person's side of sekisho: login (password + TOTP,
// or single sign-on), psql with the access credential in its environment,
// the local tunnel for GUI tools, and managed-device enrolment. It needs no
// cgo, so it builds for Windows and macOS laptops too (cmd/sekisho-client).
package client

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Usage marks a command-line mistake for the caller's exit code.
func (usageError) Usage() bool { return true }

// hintError carries a hint for the user.
type hintError struct {
	err  error
	hint string
}

func (e hintError) Error() string { return e.err.Error() }
func (e hintError) Unwrap() error { return e.err }

// Hint is what the user can do about the error.
func (e hintError) Hint() string { return e.hint }
