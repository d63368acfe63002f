package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sekisho/sekisho/internal/config"
)

// Files of the gateway's own CA in the state directory.
const (
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

// ServerTLS returns the listener's TLS configuration: the configured
// certificate, or one issued by a CA that the gateway creates in its state
// directory on first start. caPath is the CA certificate clients should
// trust (sslrootcert), or "" when the certificate came from the config.
func ServerTLS(c *config.Config) (cfg *tls.Config, caPath string, err error) {
	certFile, keyFile := c.Listen.TLS.CertFile, c.Listen.TLS.KeyFile
	if certFile == "" {
		caPath = filepath.Join(c.StateDir, caCertFile)
		certFile = filepath.Join(c.StateDir, serverCertFile)
		keyFile = filepath.Join(c.StateDir, serverKeyFile)
		if err := ensureLocalCA(c.StateDir, tlsHosts(c)); err != nil {
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
	}, caPath, nil
}

func tlsHosts(c *config.Config) []string {
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, c.Listen.TLS.Hosts...)
	if h, _, err := net.SplitHostPort(c.Listen.Address); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	return hosts
}

// ensureLocalCA creates the CA and a server certificate once; later starts
// reuse them so clients keep trusting the same CA.
func ensureLocalCA(dir string, hosts []string) error {
	if _, err := os.Stat(filepath.Join(dir, serverCertFile)); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sekisho local CA", Organization: []string{"sekisho"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "sekisho gateway"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			srvTmpl.IPAddresses = append(srvTmpl.IPAddresses, ip)
		} else {
			srvTmpl.DNSNames = append(srvTmpl.DNSNames, h)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	write := func(name, typ string, der []byte) error {
		return os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return err
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return err
	}
	return errors.Join(
		write(caCertFile, "CERTIFICATE", caDER),
		write(caKeyFile, "EC PRIVATE KEY", caKeyDER),
		write(serverKeyFile, "EC PRIVATE KEY", srvKeyDER),
		// The server certificate is written last: its presence marks the
		// set as complete.
		write(serverCertFile, "CERTIFICATE", srvDER),
	)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
