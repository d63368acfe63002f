// Package client is the person's side of sekisho: login (password + TOTP,
// or single sign-on), psql with the access credential in its environment,
// the local tunnel for GUI tools, and managed-device enrolment. It needs no
// cgo, so it builds for Windows and macOS laptops too (cmd/sekisho-client).
package client

import (
	"errors"
	"fmt"
	"io"
)

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Usage marks a command-line mistake (see Report).
func (usageError) Usage() bool { return true }

// hintError carries a hint for the user.
type hintError struct {
	err  error
	hint string
}

func (e hintError) Error() string { return e.err.Error() }
func (e hintError) Unwrap() error { return e.err }

// Hint is what the user can do about the error (see Report).
func (e hintError) Hint() string { return e.hint }

// Report prints err for the command-line program prog ("prog: error:
// ...", then "prog: hint: ..." for an error with a Hint() method) and
// returns the exit code: 0 for no error, 2 for an error with a Usage()
// method that says so, 1 otherwise.
func Report(w io.Writer, prog string, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(w, "%s: error: %v\n", prog, err)
	var he interface{ Hint() string }
	if errors.As(err, &he) && he.Hint() != "" {
		fmt.Fprintf(w, "%s: hint: %s\n", prog, he.Hint())
	}
	var ue interface{ Usage() bool }
	if errors.As(err, &ue) && ue.Usage() {
		fmt.Fprintf(w, "%s: hint: run '%s help' for usage\n", prog, prog)
		return 2
	}
	return 1
}
