package identity

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// client runs the client side of SCRAM-SHA-256 from the RFC, independently
// of the server code, and returns the client-final-message.
func clientFinal(t *testing.T, password, clientFirstBare, serverFirst string) string {
	return clientFinalBound(t, password, "n,,", nil, clientFirstBare, serverFirst)
}

func clientFinalBound(t *testing.T, password, gs2 string, cbData []byte, clientFirstBare, serverFirst string) string {
	t.Helper()
	var nonce, saltB64 string
	var iter int
	for _, a := range strings.Split(serverFirst, ",") {
		switch a[:2] {
		case "r=":
			nonce = a[2:]
		case "s=":
			saltB64 = a[2:]
		case "i=":
			fmt.Sscanf(a[2:], "%d", &iter)
		}
	}
	salt, _ := base64.StdEncoding.DecodeString(saltB64)
	salted, _ := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	mac := func(k, m []byte) []byte { h := hmac.New(sha256.New, k); h.Write(m); return h.Sum(nil) }
	clientKey := mac(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(gs2), cbData...)) + ",r=" + nonce
	sig := mac(stored[:], []byte(clientFirstBare+","+serverFirst+","+without))
	proof := make([]byte, 32)
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return without + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

func TestScramExchange(t *testing.T) {
	vs, err := NewVerifier("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVerifier(vs)
	if err != nil {
		t.Fatal(err)
	}
	if v.String() != vs {
		t.Fatalf("verifier does not round-trip: %s vs %s", v, vs)
	}
	tests := []struct {
		name     string
		password string
		decoy    bool
		wantOK   bool
	}{
		{name: "right password", password: "correct horse", wantOK: true},
		{name: "wrong password", password: "correct horsf"},
		{name: "decoy never succeeds", password: "correct horse", decoy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScramServer(v, tt.decoy, nil, ScramMechanism)
			bare := "n=,r=clientnonce123"
			sf, err := s.ClientFirst([]byte("n,," + bare))
			if err != nil {
				t.Fatal(err)
			}
			final, err := s.ClientFinal([]byte(clientFinal(t, tt.password, bare, string(sf))))
			if tt.wantOK != (err == nil) {
				t.Fatalf("err = %v, wantOK %v", err, tt.wantOK)
			}
			if err != nil && !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("err = %v, want ErrAuthFailed", err)
			}
			if tt.wantOK && !strings.HasPrefix(string(final), "v=") {
				t.Fatalf("server final = %q", final)
			}
		})
	}
}

func TestScramRejectsMalformed(t *testing.T) {
	v := DecoyVerifier([]byte("k"), "x")
	for _, first := range []string{"", "p=tls-server-end-point,,n=,r=abc", "n,,n=,r=", "n,,n=,r=a b", "n,,m=ext,n=,r=abc", "n,a=authz,n=,r=abc"} {
		if _, err := NewScramServer(v, false, nil, ScramMechanism).ClientFirst([]byte(first)); err == nil {
			t.Errorf("ClientFirst(%q) accepted", first)
		}
	}
	s := NewScramServer(v, false, nil, ScramMechanism)
	if _, err := s.ClientFinal([]byte("c=biws,r=x,p=AAAA")); err == nil {
		t.Error("ClientFinal before ClientFirst accepted")
	}
	if _, err := s.ClientFirst([]byte("n,,n=,r=abc")); err != nil {
		t.Fatal(err)
	}
	for _, final := range []string{"", "c=biws,r=abc", "c=biws,r=wrongnonce,p=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), "c=!!,r=abc,p=xx"} {
		if _, err := s.ClientFinal([]byte(final)); err == nil {
			t.Errorf("ClientFinal(%q) accepted", final)
		}
	}
}

func TestDecoyIsStable(t *testing.T) {
	a, b := DecoyVerifier([]byte("k"), "ghost"), DecoyVerifier([]byte("k"), "ghost")
	if a.String() != b.String() {
		t.Fatal("decoy verifier changes between attempts: the salt would reveal the account does not exist")
	}
	if DecoyVerifier([]byte("k"), "other").String() == a.String() {
		t.Fatal("decoy verifiers of two names are equal")
	}
}

func FuzzScramServer(f *testing.F) {
	f.Add([]byte("n,,n=,r=abc"), []byte("c=biws,r=abc,p=AAAA"))
	f.Fuzz(func(t *testing.T, first, final []byte) {
		s := NewScramServer(DecoyVerifier([]byte("k"), "u"), false, nil, ScramMechanism)
		if _, err := s.ClientFirst(first); err != nil {
			return
		}
		if _, err := s.ClientFinal(final); err == nil {
			t.Fatal("a random proof was accepted")
		}
	})
}

func TestScramChannelBinding(t *testing.T) {
	vs, _ := NewVerifier("correct horse")
	v, _ := ParseVerifier(vs)
	certHash := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("ffffffffffffffffffffffffffffffff")
	bare := "n=,r=clientnonce123"
	tests := []struct {
		name      string
		certHash  []byte // nil: not on TLS
		mechanism string
		gs2       string
		cbData    []byte
		wantOK    bool
	}{
		{name: "plus with the right certificate", certHash: certHash, mechanism: ScramPlusMechanism, gs2: "p=tls-server-end-point,,", cbData: certHash, wantOK: true},
		{name: "plus relayed through another certificate", certHash: certHash, mechanism: ScramPlusMechanism, gs2: "p=tls-server-end-point,,", cbData: other},
		{name: "plus claimed without binding", certHash: certHash, mechanism: ScramPlusMechanism, gs2: "n,,"},
		{name: "plus without TLS", mechanism: ScramPlusMechanism, gs2: "p=tls-server-end-point,,", cbData: certHash},
		{name: "plain over TLS, client cannot bind", certHash: certHash, mechanism: ScramMechanism, gs2: "n,,", wantOK: true},
		{name: "downgrade: y while PLUS was offered", certHash: certHash, mechanism: ScramMechanism, gs2: "y,,"},
		{name: "y without TLS", mechanism: ScramMechanism, gs2: "y,,", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScramServer(v, false, tt.certHash, tt.mechanism)
			sf, err := s.ClientFirst([]byte(tt.gs2 + bare))
			if err != nil {
				if tt.wantOK {
					t.Fatalf("ClientFirst: %v", err)
				}
				return
			}
			_, err = s.ClientFinal([]byte(clientFinalBound(t, "correct horse", tt.gs2, tt.cbData, bare, string(sf))))
			if tt.wantOK != (err == nil) {
				t.Fatalf("err = %v, wantOK %v", err, tt.wantOK)
			}
		})
	}
}

// Unknown names must show the iteration counts real accounts show
// (passwords and access credentials) in about equal measure, so the count
// in the server-first-message does not reveal which names exist.
func TestDecoyIterationsLookLikeAccounts(t *testing.T) {
	_, cred, err := NewAccessCredential(CredentialSalt([]byte("k"), "someone"))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := NewVerifier("a password")
	if err != nil {
		t.Fatal(err)
	}
	pw, err := ParseVerifier(enc)
	if err != nil {
		t.Fatal(err)
	}
	real := map[int]bool{cred.Iterations: true, pw.Iterations: true}
	seen := map[int]int{}
	for i := range 200 {
		seen[DecoyVerifier([]byte("decoy key"), fmt.Sprintf("user%d", i)).Iterations]++
	}
	for it, n := range seen {
		if !real[it] {
			t.Errorf("decoys show %d iterations, which no account has", it)
		}
		if n < 60 {
			t.Errorf("only %d of 200 decoys show %d iterations", n, it)
		}
	}
	if len(seen) != 2 {
		t.Errorf("decoys show iteration counts %v, want both of %v", seen, real)
	}
}
