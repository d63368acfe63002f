// Command sekisho is a zero-trust gateway in front of PostgreSQL databases
// that hold personal and medical data.
//
// Output rules:
//   - Results go to standard output; progress and diagnostics go to
//     standard error.
//   - A failure prints "sekisho: error: WHAT" and, where the user can act,
//     "sekisho: hint: WHAT TO DO" on standard error.
//   - Secrets are printed only when the command made them and the user
//     needs them once (a generated password); never in logs.
//
// Exit codes: 0 success, 1 failure, 2 wrong usage.
package main

import (
	"fmt"
	"os"

	"github.com/sekisho/sekisho/internal/client"
)

const usage = `sekisho: a zero-trust gateway for PostgreSQL databases of personal and medical data

usage:
  sekisho demo [--listen ADDR] [--hcp-rows N]     throwaway PostgreSQL + synthetic data + gateway
  sekisho serve --config FILE                     run the gateway
  sekisho user add NAME --role ROLE --expires DATE|DURATION [--kind employee|contractor|service]
                   [--sponsor EMPLOYEE] [--password-stdin] --config FILE
  sekisho user list --config FILE
  sekisho user show NAME --config FILE
  sekisho user passwd NAME [--password-stdin] --config FILE
  sekisho user mfa NAME [--no-qr] --config FILE    enrol a TOTP second factor (shows a QR code)
  sekisho user cert NAME [--out DIR] [--expires 30d] --config FILE
                                                   a service account's client certificate (its only way in)
  sekisho user extend NAME --expires DATE|DURATION --config FILE
  sekisho user suspend NAME --reason TEXT --config FILE   (ends live sessions at once)
  sekisho user resume NAME --config FILE
  sekisho user disable NAME --reason TEXT --config FILE
  sekisho user enable NAME --config FILE
  sekisho lock --all --reason TEXT --config FILE   only break-glass accounts may connect; others are ended
  sekisho unlock --config FILE
  sekisho breakglass list [--all] --config FILE    uses of break-glass accounts awaiting review
  sekisho breakglass review ID --note TEXT --config FILE
  sekisho login --url https://GATEWAY:PORT [--user NAME] [--ca FILE] [--lifetime 2h] [--password-stdin]
                                                   password + TOTP for a short-lived access credential
  sekisho login --url https://GATEWAY:PORT --sso [--device-code] [--ca FILE] [--lifetime 2h]
                                                   the same credential after signing in at the identity provider
  sekisho device enroll --url https://GATEWAY:PORT --name NAME [--user NAME] [--ca FILE]
                                                   on a managed device: a key pair and an enrolment request
  sekisho device list|approve ID|revoke ID --config FILE   the administrator's side
  sekisho psql [psql arguments]                    psql with the access credential in its environment
  sekisho tunnel [--listen 127.0.0.1:15432]        a local port for GUI tools, forwarded with the credential
  sekisho policy check --config FILE               check roles and classification against the live schema
  sekisho policy explain --role ROLE [--database DB] --sql SQL --config FILE
                                                   show the decision, the columns and the rules that decided
  sekisho version

Exit codes: 0 success, 1 failure, 2 wrong usage.
`

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Usage marks a command-line mistake (see client.Report).
func (usageError) Usage() bool { return true }

// hintError carries a hint for the user.
type hintError struct {
	err  error
	hint string
}

func (e hintError) Error() string { return e.err.Error() }
func (e hintError) Unwrap() error { return e.err }

// Hint is what the user can do about the error (see client.Report).
func (e hintError) Hint() string { return e.hint }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:])
	case "demo":
		err = cmdDemo(args[1:])
	case "user":
		err = cmdUser(args[1:])
	case "lock":
		err = cmdLock(args[1:], true)
	case "unlock":
		err = cmdLock(args[1:], false)
	case "policy":
		err = cmdPolicy(args[1:])
	case "breakglass":
		err = cmdBreakGlass(args[1:])
	case "login":
		err = client.Login(args[1:])
	case "device":
		err = cmdDevice(args[1:])
	case "psql":
		err = client.Psql(args[1:])
	case "tunnel":
		err = client.Tunnel(args[1:])
	case "version":
		fmt.Println("sekisho", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		err = usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	return report(err)
}

const version = "0.1.0-dev"

func report(err error) int { return client.Report(os.Stderr, "sekisho", err) }
