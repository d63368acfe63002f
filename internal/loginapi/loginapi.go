// Package loginapi is the JSON of the gateway's login API (HTTPS):
// password + TOTP login, single sign-on, and managed-device enrolment.
// The gateway serves it (internal/proxy); the client commands (sekisho
// login, device enroll; internal/client) speak it. It has no
// dependencies, so the client builds for any platform without cgo.
package loginapi

import "time"

// DeviceApproved is the Status of an approved device (the state store's
// name for it).
const DeviceApproved = "approved"

// LoginRequest is the body of POST /v1/login.
type LoginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
	TOTP     string `json:"totp"`
	// Lifetime asks for a shorter credential than the default ("2h").
	Lifetime string `json:"lifetime,omitempty"`
}

// LoginResponse is the answer: a credential, or an error with a hint.
type LoginResponse struct {
	User       string    `json:"user,omitempty"`
	Role       string    `json:"role,omitempty"`
	Credential string    `json:"credential,omitempty"`
	Expires    time.Time `json:"expires,omitzero"`
	// Port is the gateway's PostgreSQL port, for clients that log in and
	// then connect.
	Port int `json:"port,omitempty"`
	// Pending: a single sign-on is still in progress (ask again).
	Pending bool   `json:"pending,omitempty"`
	Error   string `json:"error,omitempty"`
	Hint    string `json:"hint,omitempty"`
}

// SSOStartRequest is the body of POST /v1/sso/start.
type SSOStartRequest struct {
	// Flow is "browser" (authorization code with PKCE) or "device"
	// (device authorization grant, for terminals without a browser).
	Flow     string `json:"flow"`
	Lifetime string `json:"lifetime,omitempty"`
}

// SSOStartResponse says where the person signs in.
type SSOStartResponse struct {
	Handle string `json:"handle,omitempty"`
	// URL is the IdP page to open (browser flow), or the verification
	// page with the code filled in (device flow).
	URL string `json:"url,omitempty"`
	// UserCode and VerificationURI: the device flow's code and page.
	UserCode        string    `json:"user_code,omitempty"`
	VerificationURI string    `json:"verification_uri,omitempty"`
	Expires         time.Time `json:"expires,omitzero"`
	Error           string    `json:"error,omitempty"`
	Hint            string    `json:"hint,omitempty"`
}

// SSOWaitRequest is the body of POST /v1/sso/wait.
type SSOWaitRequest struct {
	Handle string `json:"handle"`
}

// DeviceEnrolRequest is the body of POST /v1/devices.
type DeviceEnrolRequest struct {
	User      string `json:"user"`
	Name      string `json:"name"`
	PublicKey string `json:"public_key"` // PKIX DER, base64
}

// DeviceResponse describes a device to the device itself.
type DeviceResponse struct {
	ID          string `json:"id,omitempty"`
	Status      string `json:"status,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Certificate string `json:"certificate,omitempty"` // PEM, once approved
	Error       string `json:"error,omitempty"`
	Hint        string `json:"hint,omitempty"`
}
