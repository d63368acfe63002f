package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FrontendDecoder turns client frames of the session phase (after
// authentication) into pgproto3 messages. It reuses one message value per
// type, as pgproto3.Backend does, so a decoded message is valid only until
// the next call.
type FrontendDecoder struct {
	bind         pgproto3.Bind
	close        pgproto3.Close
	copyData     pgproto3.CopyData
	copyDone     pgproto3.CopyDone
	copyFail     pgproto3.CopyFail
	describe     pgproto3.Describe
	execute      pgproto3.Execute
	flush        pgproto3.Flush
	functionCall pgproto3.FunctionCall
	parse        pgproto3.Parse
	query        pgproto3.Query
	sync         pgproto3.Sync
	terminate    pgproto3.Terminate
}

// Decode decodes one client frame. Unknown types and bodies that do not
// parse are ErrMalformed.
func (d *FrontendDecoder) Decode(typ byte, body []byte) (pgproto3.FrontendMessage, error) {
	var msg pgproto3.FrontendMessage
	switch typ {
	case 'B':
		msg = &d.bind
	case 'C':
		msg = &d.close
	case 'd':
		msg = &d.copyData
	case 'c':
		msg = &d.copyDone
	case 'f':
		msg = &d.copyFail
	case 'D':
		msg = &d.describe
	case 'E':
		msg = &d.execute
	case 'H':
		msg = &d.flush
	case 'F':
		msg = &d.functionCall
	case 'P':
		msg = &d.parse
	case 'Q':
		msg = &d.query
	case 'S':
		msg = &d.sync
	case 'X':
		msg = &d.terminate
	default:
		return nil, fmt.Errorf("unknown frontend message type %q: %w", typ, ErrMalformed)
	}
	if err := msg.Decode(body); err != nil {
		return nil, fmt.Errorf("frontend message %q: %w", typ, ErrMalformed)
	}
	return msg, nil
}

// BackendDecoder turns upstream frames into pgproto3 messages, reusing one
// value per type; a decoded message is valid until the next call.
type BackendDecoder struct {
	backendKeyData       pgproto3.BackendKeyData
	bindComplete         pgproto3.BindComplete
	closeComplete        pgproto3.CloseComplete
	commandComplete      pgproto3.CommandComplete
	copyBothResponse     pgproto3.CopyBothResponse
	copyData             pgproto3.CopyData
	copyDone             pgproto3.CopyDone
	copyInResponse       pgproto3.CopyInResponse
	copyOutResponse      pgproto3.CopyOutResponse
	dataRow              pgproto3.DataRow
	emptyQueryResponse   pgproto3.EmptyQueryResponse
	errorResponse        pgproto3.ErrorResponse
	functionCallResponse pgproto3.FunctionCallResponse
	noData               pgproto3.NoData
	noticeResponse       pgproto3.NoticeResponse
	notificationResponse pgproto3.NotificationResponse
	parameterDescription pgproto3.ParameterDescription
	parameterStatus      pgproto3.ParameterStatus
	parseComplete        pgproto3.ParseComplete
	portalSuspended      pgproto3.PortalSuspended
	readyForQuery        pgproto3.ReadyForQuery
	rowDescription       pgproto3.RowDescription
}

// Decode decodes one upstream frame of the session phase.
func (d *BackendDecoder) Decode(typ byte, body []byte) (pgproto3.BackendMessage, error) {
	var msg pgproto3.BackendMessage
	switch typ {
	case '1':
		msg = &d.parseComplete
	case '2':
		msg = &d.bindComplete
	case '3':
		msg = &d.closeComplete
	case 'A':
		msg = &d.notificationResponse
	case 'c':
		msg = &d.copyDone
	case 'C':
		msg = &d.commandComplete
	case 'd':
		msg = &d.copyData
	case 'D':
		msg = &d.dataRow
	case 'E':
		msg = &d.errorResponse
	case 'G':
		msg = &d.copyInResponse
	case 'H':
		msg = &d.copyOutResponse
	case 'I':
		msg = &d.emptyQueryResponse
	case 'K':
		msg = &d.backendKeyData
	case 'n':
		msg = &d.noData
	case 'N':
		msg = &d.noticeResponse
	case 'S':
		msg = &d.parameterStatus
	case 's':
		msg = &d.portalSuspended
	case 't':
		msg = &d.parameterDescription
	case 'T':
		msg = &d.rowDescription
	case 'V':
		msg = &d.functionCallResponse
	case 'W':
		msg = &d.copyBothResponse
	case 'Z':
		msg = &d.readyForQuery
	default:
		return nil, fmt.Errorf("unknown backend message type %q: %w", typ, ErrMalformed)
	}
	if err := msg.Decode(body); err != nil {
		return nil, fmt.Errorf("backend message %q: %w", typ, ErrMalformed)
	}
	return msg, nil
}

// errBind and errExecute are made once: BindNames and ExecutePortal run for
// every extended-protocol statement, and fmt.Errorf there cost more than
// the decoding itself.
var (
	errBind    = fmt.Errorf("Bind: %w", ErrMalformed)
	errExecute = fmt.Errorf("Execute: %w", ErrMalformed)
	errParse   = fmt.Errorf("Parse: %w", ErrMalformed)
	errQuery   = fmt.Errorf("Query: %w", ErrMalformed)
)

// ParseFields reads a Parse body's statement name and query text and
// checks the rest of its layout as pgproto3's Parse.Decode does, without
// copying: the relay forwards the message as it came, and a client that
// sends the same text again need not cost a new string. Both alias body.
func ParseFields(body []byte) (name, query []byte, err error) {
	i := bytes.IndexByte(body, 0)
	if i < 0 {
		return nil, nil, errParse
	}
	name, rest := body[:i], body[i+1:]
	j := bytes.IndexByte(rest, 0)
	if j < 0 {
		return nil, nil, errParse
	}
	query, rest = rest[:j], rest[j+1:]
	if len(rest) < 2 || len(rest)-2 < 4*int(binary.BigEndian.Uint16(rest)) {
		return nil, nil, errParse
	}
	return name, query, nil
}

// QueryText reads a Query body's text as pgproto3's Query.Decode does,
// without copying. It aliases body.
func QueryText(body []byte) ([]byte, error) {
	i := bytes.IndexByte(body, 0)
	if i < 0 || i != len(body)-1 {
		return nil, errQuery
	}
	return body[:i], nil
}

// BindNames reads a Bind body's portal and statement names and checks the
// rest of its layout as pgproto3's Bind.Decode does, without copying or
// allocating: the relay decides by the names alone and forwards the
// message as it came. The names alias body.
func BindNames(body []byte) (portal, statement []byte, err error) {
	bad := errBind
	rest := body
	cstring := func() ([]byte, bool) {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return nil, false
		}
		s := rest[:i]
		rest = rest[i+1:]
		return s, true
	}
	u16 := func() (int, bool) {
		if len(rest) < 2 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		return n, true
	}
	var ok bool
	if portal, ok = cstring(); !ok {
		return nil, nil, bad
	}
	if statement, ok = cstring(); !ok {
		return nil, nil, bad
	}
	formats, ok := u16()
	if !ok || len(rest) < 2*formats {
		return nil, nil, bad
	}
	rest = rest[2*formats:]
	params, ok := u16()
	if !ok {
		return nil, nil, bad
	}
	for range params {
		if len(rest) < 4 {
			return nil, nil, bad
		}
		n := int(int32(binary.BigEndian.Uint32(rest)))
		rest = rest[4:]
		if n == -1 {
			continue
		}
		if n < 0 || len(rest) < n {
			return nil, nil, bad
		}
		rest = rest[n:]
	}
	results, ok := u16()
	if !ok || len(rest) < 2*results {
		return nil, nil, bad
	}
	return portal, statement, nil
}

// ExecutePortal reads an Execute body's portal name as pgproto3's
// Execute.Decode does, without allocating. The name aliases body.
func ExecutePortal(body []byte) ([]byte, error) {
	i := bytes.IndexByte(body, 0)
	if i < 0 || len(body)-i-1 < 4 {
		return nil, errExecute
	}
	return body[:i], nil
}
