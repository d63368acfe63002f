// Command sekisho-client is the person's side of sekisho alone: log in
// (password + TOTP, or single sign-on), run psql with the short-lived
// access credential, open the local tunnel for GUI tools, enrol a managed
// device. It needs no cgo, so it builds for the Windows and macOS laptops
// people use (GOOS=windows go build ./cmd/sekisho-client); the full
// sekisho binary, which runs the gateway, has the same commands.
package main

import (
	"fmt"
	"os"

	"github.com/sekisho/sekisho/internal/client"
)

const usage = `sekisho-client: log in to a sekisho gateway and connect through it

usage:
  sekisho-client login --url https://GATEWAY:PORT [--user NAME] [--ca FILE] [--lifetime 2h] [--password-stdin]
  sekisho-client login --url https://GATEWAY:PORT --sso [--device-code] [--ca FILE] [--lifetime 2h]
  sekisho-client psql [psql arguments]             psql with the access credential in its environment
  sekisho-client tunnel [--listen 127.0.0.1:15432] a local port for GUI tools, forwarded with the credential
  sekisho-client device enroll --url https://GATEWAY:PORT --name NAME [--user NAME] [--ca FILE]

Exit codes: 0 success, 1 failure, 2 wrong usage.
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	client.Program = "sekisho-client"
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "login":
		err = client.Login(args[1:])
	case "psql":
		err = client.Psql(args[1:])
	case "tunnel":
		err = client.Tunnel(args[1:])
	case "device":
		if len(args) < 2 || args[1] != "enroll" {
			fmt.Fprint(os.Stderr, "sekisho-client: error: device: only 'device enroll' runs on a device; an administrator approves it on the gateway\n")
			return 2
		}
		err = client.DeviceEnroll(args[2:])
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "sekisho-client: error: unknown command %q\n%s", args[0], usage)
		return 2
	}
	return client.Report(os.Stderr, "sekisho-client", err)
}
