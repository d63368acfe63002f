package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// The device CA signs the client certificates of approved managed devices.
// It is separate from the listener's CA (which may not exist when the
// listener's certificate comes from the config) and never signs servers.
const (
	DeviceCACertFile = "device-ca.crt"
	DeviceCAKeyFile  = "device-ca.key"
)

// DeviceCA is the CA that issues device certificates.
type DeviceCA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte
}

// EnsureDeviceCA loads the device CA from dir, creating it on first use.
func EnsureDeviceCA(dir string) (*DeviceCA, error) {
	certPath, keyPath := filepath.Join(dir, DeviceCACertFile), filepath.Join(dir, DeviceCAKeyFile)
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: "sekisho device CA", Organization: []string{"sekisho"}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("device CA in %s: not PEM", dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	return &DeviceCA{Cert: cert, key: key, PEM: certPEM}, nil
}

// DeviceURI is the URI SAN that names a device in its certificate.
func DeviceURI(id string) *url.URL { return &url.URL{Scheme: "sekisho", Opaque: "device:" + id} }

// DeviceID returns the device a certificate names (from its URI SAN).
func DeviceID(c *x509.Certificate) (string, bool) {
	for _, u := range c.URIs {
		if u.Scheme == "sekisho" && len(u.Opaque) > 7 && u.Opaque[:7] == "device:" {
			return u.Opaque[7:], true
		}
	}
	return "", false
}

// KeyFingerprint is the SHA-256 of a public key's PKIX encoding, in hex:
// what an administrator compares with what the device shows.
func KeyFingerprint(pkixDER []byte) string {
	s := sha256.Sum256(pkixDER)
	return hex.EncodeToString(s[:])
}

// Issue signs a client certificate for a device's public key (PKIX DER).
func (ca *DeviceCA) Issue(pkixDER []byte, user, deviceID string, notAfter time.Time) ([]byte, error) {
	pub, err := x509.ParsePKIXPublicKey(pkixDER)
	if err != nil {
		return nil, fmt.Errorf("device public key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: user, OrganizationalUnit: []string{"sekisho device " + deviceID}},
		NotBefore:    time.Now().Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{DeviceURI(deviceID)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// ServiceURI is the URI SAN that names a service account in its client
// certificate.
func ServiceURI(user string) *url.URL { return &url.URL{Scheme: "sekisho", Opaque: "service:" + user} }

// ServiceUser returns the service account a certificate names.
func ServiceUser(c *x509.Certificate) (string, bool) {
	for _, u := range c.URIs {
		if u.Scheme == "sekisho" && len(u.Opaque) > 8 && u.Opaque[:8] == "service:" {
			return u.Opaque[8:], true
		}
	}
	return "", false
}

// CertFingerprint is the SHA-256 of a certificate, in hex.
func CertFingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// IssueService makes a key pair and a client certificate for a service
// account; it returns both in PEM and the certificate's fingerprint.
func (ca *DeviceCA) IssueService(user string, notAfter time.Time) (certPEM, keyPEM []byte, fingerprint string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: user, OrganizationalUnit: []string{"sekisho service account"}},
		NotBefore:    time.Now().Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{ServiceURI(user)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), CertFingerprint(der), nil
}
