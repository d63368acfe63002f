package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"
)

// Refusal is what a client is told when the gateway refuses something: a
// SQLSTATE, a fixed message that is safe to show, and a hint saying what to
// do. It is the only way gateway-made errors reach a client; internal
// errors are logged, never sent.
type Refusal struct {
	Code    string // SQLSTATE
	Message string
	Hint    string
	// Fatal refusals end the connection (severity FATAL).
	Fatal bool
	// Reason is the short cause recorded in the audit event.
	Reason string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

// ErrorResponse turns the refusal into the protocol message.
func (r *Refusal) ErrorResponse() *pgproto3.ErrorResponse {
	sev := "ERROR"
	if r.Fatal {
		sev = "FATAL"
	}
	return &pgproto3.ErrorResponse{
		Severity:            sev,
		SeverityUnlocalized: sev,
		Code:                r.Code,
		Message:             r.Message,
		Hint:                r.Hint,
		Routine:             "sekisho",
	}
}

// SQLSTATEs the gateway uses (PostgreSQL's errcodes.txt).
const (
	codeInvalidAuthorization  = "28000"
	codeInvalidPassword       = "28P01"
	codeProtocolViolation     = "08P01"
	codeCannotConnect         = "08001"
	codeRejectedConnection    = "08004"
	codeConnectionFailure     = "08006"
	codeFeatureNotSupported   = "0A000"
	codeInvalidCatalogName    = "3D000"
	codeAdminShutdown         = "57P01"
	codeIdleSessionTimeout    = "57P05"
	codeTooManyConnections    = "53300"
	codeProgramLimitExceeded  = "54000"
	codeInsufficientPrivilege = "42501"
)
