package proxy

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/pires/go-proxyproto"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/netio"
)

// Listen opens the client listener on listen.address.
func Listen(c *config.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", c.Listen.Address)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return WrapProxyProtocol(netio.Listener{Listener: ln}, c), nil
}

// WrapProxyProtocol makes ln accept PROXY protocol headers (v1 and v2)
// from the load balancers in listen.proxy_protocol_from, and only from
// them: a connection from a listed address must start with a header, whose
// client address then is the one that rules and audit see; a header from
// any other address is refused, so no client can claim another's address.
// Without proxy_protocol_from, ln is returned as it is.
func WrapProxyProtocol(ln net.Listener, c *config.Config) net.Listener {
	trusted := c.Listen.ProxyPrefixes()
	if len(trusted) == 0 {
		return ln
	}
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: c.Limits.StartupTimeout.D(),
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if ap, err := netip.ParseAddrPort(o.Upstream.String()); err == nil {
				for _, p := range trusted {
					if p.Contains(ap.Addr().Unmap()) {
						return proxyproto.REQUIRE, nil
					}
				}
			}
			return proxyproto.REJECT, nil
		},
	}
}
