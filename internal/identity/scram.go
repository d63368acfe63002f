// Package identity authenticates gateway users. This file holds the server
// side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, and
// the verifiers stored in place of passwords.
package identity

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/text/secure/precis"
)

// ScramIterations matches PostgreSQL's default scram_iterations.
const ScramIterations = 4096

// ScramMechanism is the only SASL mechanism the gateway offers.
const ScramMechanism = "SCRAM-SHA-256"

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
	return Verifier{Iterations: ScramIterations, Salt: sum[:16], StoredKey: hmacSum(sum, []byte("stored")), ServerKey: hmacSum(sum, []byte("server"))}
}

// ScramServer is one SCRAM-SHA-256 exchange, server side.
type ScramServer struct {
	v               Verifier
	decoy           bool
	clientFirstBare string
	serverFirst     string
	nonce           string
}

// NewScramServer starts an exchange against v. decoy marks an exchange for
// an unknown user, which always fails at the last step.
func NewScramServer(v Verifier, decoy bool) *ScramServer {
	return &ScramServer{v: v, decoy: decoy}
}

// ClientFirst takes the client-first-message (the SASLInitialResponse data)
// and returns the server-first-message.
func (s *ScramServer) ClientFirst(msg []byte) ([]byte, error) {
	m := string(msg)
	// gs2-header: "n,," (no channel binding) or "y,," (client could bind,
	// but the server did not offer SCRAM-SHA-256-PLUS). "p=" would ask for
	// binding that was not offered. An authzid is not supported.
	var bare string
	switch {
	case strings.HasPrefix(m, "n,,"), strings.HasPrefix(m, "y,,"):
		bare = m[3:]
	default:
		return nil, ErrAuthFailed
	}
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
	gs2, err := base64.StdEncoding.DecodeString(cb)
	if err != nil || !(bytes.Equal(gs2, []byte("n,,")) || bytes.Equal(gs2, []byte("y,,"))) {
		return nil, ErrAuthFailed
	}
	if subtle.ConstantTimeCompare([]byte(nonce), []byte(s.nonce)) != 1 {
		return nil, ErrAuthFailed
	}
	authMessage := []byte(s.clientFirstBare + "," + s.serverFirst + "," + withoutProof)
	clientSig := hmacSum(s.v.StoredKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	for j := range clientKey {
		clientKey[j] = proof[j] ^ clientSig[j]
	}
	got := sha256.Sum256(clientKey)
	ok := subtle.ConstantTimeCompare(got[:], s.v.StoredKey) == 1
	if !ok || s.decoy {
		return nil, ErrAuthFailed
	}
	return []byte("v=" + base64.StdEncoding.EncodeToString(hmacSum(s.v.ServerKey, authMessage))), nil
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
