// Package identity authenticates gateway users. This file holds the server
// side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, and
// the verifiers stored in place of passwords.
package identity

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/text/secure/precis"
)

// ScramIterations matches PostgreSQL's default scram_iterations.
const ScramIterations = 4096

// SASL mechanisms the gateway offers: SCRAM-SHA-256 always, and over TLS
// SCRAM-SHA-256-PLUS, which binds the exchange to the gateway's certificate
// (tls-server-end-point, RFC 5929) so a man in the middle that terminates
// TLS with another certificate cannot relay a login.
const (
	ScramMechanism     = "SCRAM-SHA-256"
	ScramPlusMechanism = "SCRAM-SHA-256-PLUS"
)

// CertificateHash returns the tls-server-end-point channel binding data of
// a certificate: its hash with the signature's hash function, SHA-256 for
// MD5 and SHA-1 (RFC 5929 section 4.1).
func CertificateHash(cert *x509.Certificate) ([]byte, error) {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil, fmt.Errorf("tls-server-end-point is undefined for signature algorithm %v", cert.SignatureAlgorithm)
	}
	h.Write(cert.Raw)
	return h.Sum(nil), nil
}

// ErrAuthFailed is the one failure a client learns about: it never says
// whether the account exists or which part was wrong.
var ErrAuthFailed = errors.New("authentication failed")

// Verifier is a parsed SCRAM-SHA-256 verifier.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// NewVerifier derives a verifier from a password, in PostgreSQL's text form
// "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>".
func NewVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	v, err := deriveVerifier(password, salt, ScramIterations)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

func deriveVerifier(password string, salt []byte, iter int) (Verifier, error) {
	salted, err := pbkdf2.Key(sha256.New, normalizePassword(password), salt, iter, sha256.Size)
	if err != nil {
		return Verifier{}, err
	}
	clientKey := hmacSum(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	return Verifier{Iterations: iter, Salt: salt, StoredKey: stored[:], ServerKey: hmacSum(salted, []byte("Server Key"))}, nil
}

// normalizePassword applies SASLprep as libpq and pgx do; passwords it
// rejects are used as raw bytes, as PostgreSQL does.
func normalizePassword(p string) string {
	n, err := precis.OpaqueString.String(p)
	if err != nil {
		return p
	}
	return n
}

func (v Verifier) String() string {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s$%d:%s$%s:%s", ScramMechanism, v.Iterations, b64(v.Salt), b64(v.StoredKey), b64(v.ServerKey))
}

// ParseVerifier parses PostgreSQL's text form of a verifier.
func ParseVerifier(s string) (Verifier, error) {
	bad := errors.New("malformed SCRAM verifier")
	mech, rest, ok := strings.Cut(s, "$")
	if !ok || mech != ScramMechanism {
		return Verifier{}, bad
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return Verifier{}, bad
	}
	iterS, saltS, ok1 := strings.Cut(iterSalt, ":")
	storedS, serverS, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return Verifier{}, bad
	}
	var v Verifier
	var err error
	if v.Iterations, err = strconv.Atoi(iterS); err != nil || v.Iterations < 1 {
		return Verifier{}, bad
	}
	dec := base64.StdEncoding.DecodeString
	if v.Salt, err = dec(saltS); err != nil {
		return Verifier{}, bad
	}
	if v.StoredKey, err = dec(storedS); err != nil || len(v.StoredKey) != sha256.Size {
		return Verifier{}, bad
	}
	if v.ServerKey, err = dec(serverS); err != nil || len(v.ServerKey) != sha256.Size {
		return Verifier{}, bad
	}
	return v, nil
}

// DecoyVerifier returns a verifier for a user that does not exist, derived
// from a gateway secret and the name so that it is stable across attempts:
// the exchange runs to the end and fails like a wrong password, so neither
// the messages nor the salt tell an attacker whether the account exists.
func DecoyVerifier(key []byte, user string) Verifier {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("sekisho decoy verifier\x00" + user))
	sum := m.Sum(nil)
	// Real accounts show either the password count or the access
	// credential count (roles with MFA); unknown names show one of them
	// too, chosen by the name, so the count reveals nothing.
	iter := ScramIterations
	if sum[16]&1 == 1 {
		iter = credentialIterations
	}
	return Verifier{Iterations: iter, Salt: sum[:16], StoredKey: hmacSum(sum, []byte("stored")), ServerKey: hmacSum(sum, []byte("server"))}
}

// ScramServer is one SCRAM-SHA-256 exchange, server side.
type ScramServer struct {
	v               Verifier
	alts            []Verifier // further verifiers with v's salt and iterations
	decoy           bool
	certHash        []byte // channel binding data; nil when not on TLS
	plus            bool   // the client chose SCRAM-SHA-256-PLUS
	gs2             string
	clientFirstBare string
	serverFirst     string
	nonce           string
	matched         *Verifier
}

// Matched returns the verifier the client proved it knows the secret of
// (after a successful ClientFinal).
func (s *ScramServer) Matched() *Verifier { return s.matched }

// NewScramServer starts an exchange against v. decoy marks an exchange for
// an unknown user, which always fails at the last step. certHash is the
// gateway certificate's channel binding data when the connection is TLS
// (and SCRAM-SHA-256-PLUS was offered), nil otherwise. mechanism is what
// the client chose.
func NewScramServer(v Verifier, decoy bool, certHash []byte, mechanism string) *ScramServer {
	return &ScramServer{v: v, decoy: decoy, certHash: certHash, plus: mechanism == ScramPlusMechanism}
}

// NewScramServerAny starts an exchange that accepts any of vs, which must
// share salt and iterations (a user's access credentials). With no
// verifiers it runs to the end and fails, like a decoy.
func NewScramServerAny(salt []byte, vs []Verifier, certHash []byte, mechanism string) *ScramServer {
	s := &ScramServer{certHash: certHash, plus: mechanism == ScramPlusMechanism}
	if len(vs) == 0 {
		s.v = Verifier{Iterations: credentialIterations, Salt: salt, StoredKey: make([]byte, sha256.Size), ServerKey: make([]byte, sha256.Size)}
		s.decoy = true
		return s
	}
	s.v, s.alts = vs[0], vs[1:]
	return s
}

// ClientFirst takes the client-first-message (the SASLInitialResponse data)
// and returns the server-first-message.
func (s *ScramServer) ClientFirst(msg []byte) ([]byte, error) {
	m := string(msg)
	// gs2-header: "p=tls-server-end-point,," with SCRAM-SHA-256-PLUS;
	// otherwise "n,," (client cannot bind) or "y,," (client could bind but
	// thinks the server cannot). "y" when the server offered PLUS means
	// someone removed PLUS from the offer: RFC 5802 section 6 says fail.
	// An authzid is not supported.
	var bare string
	switch {
	case s.plus:
		if s.certHash == nil || !strings.HasPrefix(m, "p=tls-server-end-point,,") {
			return nil, ErrAuthFailed
		}
		s.gs2 = "p=tls-server-end-point,,"
	case strings.HasPrefix(m, "n,,"):
		s.gs2 = "n,,"
	case strings.HasPrefix(m, "y,,") && s.certHash == nil:
		s.gs2 = "y,,"
	default:
		return nil, ErrAuthFailed
	}
	bare = m[len(s.gs2):]
	var clientNonce string
	for _, attr := range strings.Split(bare, ",") {
		if strings.HasPrefix(attr, "r=") {
			clientNonce = attr[2:]
		}
		if strings.HasPrefix(attr, "m=") {
			return nil, ErrAuthFailed // mandatory extensions are not supported
		}
	}
	if clientNonce == "" || !printable(clientNonce) {
		return nil, ErrAuthFailed
	}
	sn := make([]byte, 18)
	if _, err := rand.Read(sn); err != nil {
		return nil, err
	}
	s.clientFirstBare = bare
	s.nonce = clientNonce + base64.RawStdEncoding.EncodeToString(sn)
	s.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", s.nonce, base64.StdEncoding.EncodeToString(s.v.Salt), s.v.Iterations)
	return []byte(s.serverFirst), nil
}

// ClientFinal takes the client-final-message and, when the proof is right,
// returns the server-final-message. Any failure is ErrAuthFailed.
func (s *ScramServer) ClientFinal(msg []byte) ([]byte, error) {
	if s.serverFirst == "" {
		return nil, ErrAuthFailed
	}
	m := string(msg)
	i := strings.LastIndex(m, ",p=")
	if i < 0 {
		return nil, ErrAuthFailed
	}
	withoutProof := m[:i]
	proof, err := base64.StdEncoding.DecodeString(m[i+3:])
	if err != nil || len(proof) != sha256.Size {
		return nil, ErrAuthFailed
	}
	var cb, nonce string
	for _, attr := range strings.Split(withoutProof, ",") {
		switch {
		case strings.HasPrefix(attr, "c="):
			cb = attr[2:]
		case strings.HasPrefix(attr, "r="):
			nonce = attr[2:]
		}
	}
	// c= carries the gs2 header again, followed by the channel binding
	// data when binding: it must be this connection's certificate hash.
	want := []byte(s.gs2)
	if s.plus {
		want = append(want, s.certHash...)
	}
	got, err := base64.StdEncoding.DecodeString(cb)
	if err != nil || subtle.ConstantTimeCompare(got, want) != 1 {
		return nil, ErrAuthFailed
	}
	if subtle.ConstantTimeCompare([]byte(nonce), []byte(s.nonce)) != 1 {
		return nil, ErrAuthFailed
	}
	authMessage := []byte(s.clientFirstBare + "," + s.serverFirst + "," + withoutProof)
	var match *Verifier
	for _, v := range append([]Verifier{s.v}, s.alts...) {
		// Every candidate is checked, so the time does not say which.
		clientSig := hmacSum(v.StoredKey, authMessage)
		clientKey := make([]byte, sha256.Size)
		for j := range clientKey {
			clientKey[j] = proof[j] ^ clientSig[j]
		}
		stored := sha256.Sum256(clientKey)
		if subtle.ConstantTimeCompare(stored[:], v.StoredKey) == 1 && match == nil {
			match = &v
		}
	}
	if match == nil || s.decoy {
		return nil, ErrAuthFailed
	}
	s.matched = match
	return []byte("v=" + base64.StdEncoding.EncodeToString(hmacSum(match.ServerKey, authMessage))), nil
}

func hmacSum(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}
