package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/loginapi"
	"github.com/sekisho/sekisho/internal/pki"
	"github.com/sekisho/sekisho/internal/store"
)

// Managed devices. A device enrols (its key pair never leaves it), an
// administrator approves it (sekisho device approve), and it then presents
// a client certificate from the gateway's device CA on every TLS
// connection: to the login API, whose credential is then bound to it, and
// to the PostgreSQL listener. A role with require_device admits only
// approved devices, and a bound credential works only from its device.

// maxPendingDevices bounds the enrolment requests a user may have waiting.
const maxPendingDevices = 3

// DeviceEnrolRequest is loginapi.DeviceEnrolRequest.
type DeviceEnrolRequest = loginapi.DeviceEnrolRequest

// DeviceResponse is loginapi.DeviceResponse.
type DeviceResponse = loginapi.DeviceResponse

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) handleDeviceEnrol(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	now := s.now()
	lc := cfg.Login
	if s.failures.blocked(r.RemoteAddr, now, lc.FailureWindow.D(), lc.FailuresPerAddress) {
		writeJSON(w, http.StatusTooManyRequests, DeviceResponse{Error: "too many requests from your address", Hint: "Wait and try again."})
		return
	}
	var req DeviceEnrolRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10))
	dec.DisallowUnknownFields()
	key, kerr := []byte(nil), error(nil)
	if err := dec.Decode(&req); err == nil {
		key, kerr = base64.StdEncoding.DecodeString(req.PublicKey)
	}
	if req.User == "" || req.Name == "" || len(req.Name) > 64 || kerr != nil || len(key) == 0 {
		writeJSON(w, http.StatusBadRequest, DeviceResponse{Error: "an enrolment names the user, the device and its public key", Hint: "Use 'sekisho device enroll'."})
		return
	}
	if _, err := x509.ParsePKIXPublicKey(key); err != nil {
		writeJSON(w, http.StatusBadRequest, DeviceResponse{Error: "the public key is not a PKIX public key", Hint: "Use 'sekisho device enroll'."})
		return
	}
	// Each request counts against the address like a failed login, so
	// enrolment cannot be used to flood the store.
	s.failures.fail(r.RemoteAddr, now, lc.FailureWindow.D())
	ctx := r.Context()
	devs, err := s.store.Devices(ctx, req.User)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, DeviceResponse{Error: "sekisho cannot record devices right now", Hint: "Try again."})
		return
	}
	pending := 0
	for _, d := range devs {
		if d.Status == store.DevicePending {
			pending++
		}
	}
	if pending >= maxPendingDevices {
		writeJSON(w, http.StatusTooManyRequests, DeviceResponse{Error: "too many device enrolments are waiting for approval",
			Hint: "Ask " + cfg.Contact + " to approve or revoke the waiting ones."})
		return
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	d := store.Device{ID: hex.EncodeToString(id), User: req.User, Name: req.Name, PublicKey: key, Fingerprint: pki.KeyFingerprint(key),
		Status: store.DevicePending, Requested: now, Source: addressKey(r.RemoteAddr)}
	if err := s.store.AddDevice(ctx, d); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, DeviceResponse{Error: "sekisho cannot record devices right now", Hint: "Try again."})
		return
	}
	// Whether the user exists is not said: the administrator decides.
	_ = s.record(audit.Event{Type: audit.DeviceEvent, User: req.User, Source: r.RemoteAddr,
		Reason: fmt.Sprintf("device %s (%q) enrolment requested; key %s", d.ID, d.Name, d.Fingerprint)})
	writeJSON(w, http.StatusOK, DeviceResponse{ID: d.ID, Status: d.Status, Fingerprint: d.Fingerprint})
}

func (s *Server) handleDeviceStatus(w http.ResponseWriter, r *http.Request) {
	d, err := s.store.Device(r.Context(), r.PathValue("id"))
	if err != nil {
		writeJSON(w, http.StatusNotFound, DeviceResponse{Error: "no such device", Hint: "Enrol the device again."})
		return
	}
	resp := DeviceResponse{ID: d.ID, Status: d.Status, Fingerprint: d.Fingerprint}
	if d.Status == store.DeviceApproved {
		resp.Certificate = d.CertPEM // public: useless without the device's key
	}
	writeJSON(w, http.StatusOK, resp)
}

var errNoDevice = errors.New("no device certificate")

// presentedDevice returns the device whose certificate a TLS client
// presented (the TLS stack verified it against the device CA), checked
// against the store: approved, this user's, the very certificate issued.
func (s *Server) presentedDevice(ctx context.Context, state *tls.ConnectionState, user string) (store.Device, error) {
	if state == nil || len(state.PeerCertificates) == 0 {
		return store.Device{}, errNoDevice
	}
	cert := state.PeerCertificates[0]
	if _, service := pki.ServiceUser(cert); service {
		return store.Device{}, errNoDevice // a service account's certificate, checked at authentication
	}
	id, ok := pki.DeviceID(cert)
	if !ok {
		return store.Device{}, errors.New("the client certificate names no device")
	}
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return store.Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	block, _ := pem.Decode([]byte(d.CertPEM))
	switch {
	case d.Status != store.DeviceApproved:
		return d, fmt.Errorf("device %s is %s", id, d.Status)
	case d.User != user:
		return d, fmt.Errorf("device %s belongs to another user", id)
	case block == nil || !bytes.Equal(block.Bytes, cert.Raw):
		return d, fmt.Errorf("device %s presented a certificate that is not its current one", id)
	case !s.now().Before(d.Expires):
		return d, fmt.Errorf("device %s's certificate expired", id)
	}
	return d, nil
}

// deviceRefusal is what a client is told when its device does not do.
func deviceRefusal(contact string, err error) *Refusal {
	return &Refusal{Code: codeInvalidAuthorization, Reason: "device_refused",
		Message: "this role connects only from an approved managed device, with a credential from that device",
		Hint: "Use your managed device ('sekisho device enroll', then an administrator's 'sekisho device approve'), " +
			"log in from it with 'sekisho login', and connect with 'sekisho psql' or 'sekisho tunnel'; ask " + contact + " if it was revoked."}
}
