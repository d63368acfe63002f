// Command relay is the simplest TCP relay Go's standard library allows:
// io.Copy in each direction, no protocol parsing, no TLS, no audit. The
// benchmark runs it beside sekisho to show what Go's network stack itself
// costs on the machine, separately from what sekisho adds.
//
//	relay LISTEN_ADDR UPSTREAM_ADDR
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: relay LISTEN_ADDR UPSTREAM_ADDR")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", os.Args[2])
			if err != nil {
				return
			}
			defer u.Close()
			go func() { io.Copy(u, c); u.Close() }()
			io.Copy(c, u)
		}()
	}
}
