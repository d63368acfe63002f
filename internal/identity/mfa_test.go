package identity

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTOTP(t *testing.T) {
	// RFC 6238 appendix B, SHA-1 (the last six of the eight digits).
	secret := "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	for _, tc := range []struct {
		unix int64
		code string
	}{{59, "287082"}, {1111111109, "081804"}, {1234567890, "005924"}, {2000000000, "279037"}} {
		got, err := TOTPCode(secret, TOTPStep(time.Unix(tc.unix, 0)))
		if err != nil || got != tc.code {
			t.Fatalf("at %d: %s %v, want %s", tc.unix, got, err, tc.code)
		}
	}
	now := time.Unix(1234567890, 0)
	if step, ok := CheckTOTP(secret, "005924", now); !ok || step != TOTPStep(now) {
		t.Fatal("current code refused")
	}
	if _, ok := CheckTOTP(secret, "005924", now.Add(31*time.Second)); !ok {
		t.Fatal("code from the previous step refused (clock skew)")
	}
	if _, ok := CheckTOTP(secret, "005924", now.Add(91*time.Second)); ok {
		t.Fatal("a three-step-old code accepted")
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef", "005925"} {
		if _, ok := CheckTOTP(secret, bad, now); ok {
			t.Fatalf("%q accepted", bad)
		}
	}
	uri := OTPAuthURI("sekisho", "alice", secret)
	if !strings.HasPrefix(uri, "otpauth://totp/sekisho:alice?") || !strings.Contains(uri, "secret="+secret) {
		t.Fatalf("uri %s", uri)
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q %v", h, err)
	}
	if !CheckPassword(h, "correct horse") || CheckPassword(h, "correct horsf") {
		t.Fatal("password check wrong")
	}
	for _, bad := range []string{"", "$argon2id$v=19$m=0,t=0,p=0$$", "plain"} {
		if CheckPassword(bad, "") {
			t.Fatalf("malformed hash %q matched", bad)
		}
	}
}

func TestScramAnyCredential(t *testing.T) {
	salt := CredentialSalt([]byte("k"), "alice")
	var vs []Verifier
	var secrets []string
	for range 3 {
		s, v, err := NewAccessCredential(salt)
		if err != nil || !LooksLikeCredential(s) {
			t.Fatalf("%q %v", s, err)
		}
		secrets, vs = append(secrets, s), append(vs, v)
	}
	for i, s := range secrets {
		srv := NewScramServerAny(salt, vs, nil, ScramMechanism)
		if err := scramRoundTrip(srv, s); err != nil {
			t.Fatalf("credential %d: %v", i, err)
		}
	}
	if err := scramRoundTrip(NewScramServerAny(salt, vs, nil, ScramMechanism), "sks_wrong"); err == nil {
		t.Fatal("a wrong credential was accepted")
	}
	if err := scramRoundTrip(NewScramServerAny(salt, nil, nil, ScramMechanism), secrets[0]); err == nil {
		t.Fatal("accepted with no credentials on file")
	}
}

// scramRoundTrip runs a SCRAM-SHA-256 client (RFC 5802) against srv.
func scramRoundTrip(srv *ScramServer, password string) error {
	clientFirstBare := "n=,r=clientnonce123"
	sf, err := srv.ClientFirst([]byte("n,," + clientFirstBare))
	if err != nil {
		return err
	}
	var nonce, saltB64 string
	iter := 0
	for _, a := range strings.Split(string(sf), ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			nonce = a[2:]
		case strings.HasPrefix(a, "s="):
			saltB64 = a[2:]
		case strings.HasPrefix(a, "i="):
			fmt.Sscanf(a[2:], "%d", &iter)
		}
	}
	salt, _ := base64.StdEncoding.DecodeString(saltB64)
	salted, _ := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	clientKey := hmacSum(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	without := "c=biws,r=" + nonce
	sig := hmacSum(stored[:], []byte(clientFirstBare+","+string(sf)+","+without))
	proof := make([]byte, 32)
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	_, err = srv.ClientFinal([]byte(without + ",p=" + base64.StdEncoding.EncodeToString(proof)))
	return err
}
