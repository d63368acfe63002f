package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/pki"
)

// ServerTLS returns the listener's TLS configuration: the configured
// certificate, or one issued by a CA that the gateway creates in its state
// directory on first start. caPath is the CA certificate clients should
// trust (sslrootcert), or "" when the certificate came from the config.
func ServerTLS(c *config.Config) (cfg *tls.Config, caPath string, err error) {
	certFile, keyFile := c.Listen.TLS.CertFile, c.Listen.TLS.KeyFile
	if certFile == "" {
		caPath = filepath.Join(c.StateDir, pki.CACertFile)
		certFile = filepath.Join(c.StateDir, pki.ServerCertFile)
		keyFile = filepath.Join(c.StateDir, pki.ServerKeyFile)
		if err := pki.EnsureCA(c.StateDir, tlsHosts(c)); err != nil {
			return nil, "", err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("listener certificate: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// No session resumption: every connection shows (and has
		// verified) its client certificate afresh, and the gateway need
		// not make tickets libpq never uses.
		SessionTicketsDisabled: true,
	}, caPath, nil
}

func tlsHosts(c *config.Config) []string {
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, c.Listen.TLS.Hosts...)
	if h, _, err := net.SplitHostPort(c.Listen.Address); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	return hosts
}
