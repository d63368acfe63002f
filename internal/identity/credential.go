package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// CredentialPrefix starts every access credential, so one found in a log
// or a paste is recognised for what it is.
const CredentialPrefix = "sks_"

// credentialIterations is the SCRAM iteration count of access
// credentials. PBKDF2's work factor exists to slow the guessing of
// passwords people chose; an access credential is 256 random bits, which
// no number of guesses reaches, so 4096 iterations would only make every
// connection cost the client milliseconds of CPU (libpq spends about 8 ms
// on them here) for nothing. DecoyVerifier shows this count for some
// unknown names, so it does not tell which accounts exist.
const credentialIterations = 16

// CredentialSalt is the SCRAM salt of a user's access credentials: derived
// from a gateway secret and the name, the same for all of them (the server
// must name the salt before it knows which credential the client holds),
// and for names without an account it looks the same.
func CredentialSalt(key []byte, user string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("access credential salt\x00" + user))
	return m.Sum(nil)[:16]
}

// NewAccessCredential makes a credential for a user: the secret the user
// gets (once) and the verifier the gateway keeps in its place.
func NewAccessCredential(salt []byte) (secret string, v Verifier, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", Verifier{}, err
	}
	secret = CredentialPrefix + base64.RawURLEncoding.EncodeToString(b)
	v, err = deriveVerifier(secret, salt, credentialIterations)
	return secret, v, err
}

// LooksLikeCredential reports whether s has the shape of an access
// credential.
func LooksLikeCredential(s string) bool {
	return strings.HasPrefix(s, CredentialPrefix) && len(s) == len(CredentialPrefix)+43
}

// CredentialVerifiers makes a SCRAM exchange accept any of a user's
// credentials; with none it fails like a wrong password, at the end.
func CredentialVerifiers(salt []byte, stored [][2][]byte) []Verifier {
	vs := make([]Verifier, 0, len(stored))
	for _, s := range stored {
		vs = append(vs, Verifier{Iterations: credentialIterations, Salt: salt, StoredKey: s[0], ServerKey: s[1]})
	}
	return vs
}
