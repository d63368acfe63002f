package proxy

import (
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sekisho/sekisho/internal/sqlscope"
)

// Inspector is the seam through which the gateway's decisions see and
// change what crosses it: policy decides each statement before it is
// forwarded, masking and the exposure ledger see each result row before it
// reaches the client. A Server without an Inspector relays unchanged.
//
// Methods are called from the session's goroutines: Statement from the
// client→upstream direction, Result and the RowFilter from the
// upstream→client direction. An Inspector is made per session (see
// Server.Inspect), so it may keep per-session state without locks for each
// direction.
type Inspector interface {
	// Statement is called for every Query and Parse before it is
	// forwarded. A non-nil Refusal refuses it: the upstream never sees
	// the statement and the client gets the refusal in its place, in
	// order. The inspector sets st.Masked when the statement's results
	// may need masking: the gateway then makes sure Result sees a
	// RowDescription before every row of them (in the extended protocol
	// it sends its own Describe before each Execute of such a statement).
	Statement(st *Statement) *Refusal
	// Result is called with each RowDescription of a result the client
	// will receive. The RowFilter it returns (nil: rows pass unchanged)
	// sees every DataRow until the result ends. A Refusal ends the
	// session before any row is sent.
	//
	// Rows of a statement that was not marked Masked may arrive without a
	// RowDescription in the same response (the client described the
	// statement earlier, or never did): they pass unfiltered, as the
	// inspector decided. COPY TO STDOUT data is not shown to the
	// inspector: decide COPY (and COPY (SELECT ...)) in Statement.
	Result(rd *pgproto3.RowDescription) (RowFilter, *Refusal)
	// Message may rewrite an ErrorResponse or NoticeResponse from the
	// upstream before the client sees it (to remove quoted values); it
	// reports whether it changed anything.
	Message(e *pgproto3.ErrorResponse) bool
}

// resultPasser is an Inspector that can tell, for the whole session, that
// Result would return no filter and no refusal and Message would change
// nothing: the relay then skips decoding RowDescriptions, errors and
// notices for it.
type resultPasser interface {
	PassesResults() bool
}

// RowFilter rewrites one result row in place (values are the column values
// in the row's format; nil is SQL NULL). A non-nil Refusal ends the
// statement: the row is not sent.
type RowFilter func(values [][]byte) *Refusal

// Statement is a client statement as the gateway sees it.
type Statement struct {
	// Kind is the message that carried it: 'Q' (Query) or 'P' (Parse).
	// FunctionCall messages are refused before any inspector sees them.
	Kind byte
	// Text is the SQL exactly as the client sent it. It may hold literal
	// values: never log it; the audit log gets Redacted.
	Text string
	// Redacted is Text with literal values replaced by placeholders.
	Redacted string
	// Shape is Text's literal shape (sqlscope.ShapeOf), which the
	// redaction and decision caches share; a zero Shape is computed when
	// needed.
	Shape sqlscope.Shape
	// Name is the prepared statement name of a Parse ("" is unnamed).
	Name string
	// Masked is set by the inspector: results may hold masked columns.
	Masked bool
	// Forgets is set by the inspector: the prepared statements and
	// portals the statement drops or redefines with SQL (PREPARE,
	// DEALLOCATE, DECLARE, CLOSE, DISCARD ALL). When it runs, the gateway
	// forgets what it knew of them, so their rows are described and
	// masked as those of statements it never saw.
	Forgets sqlscope.Forget
	// Principal is who sent it.
	Principal Principal
	// At is when it arrived (zero: not known, the inspector reads the
	// clock if it needs the time).
	At time.Time
}

// Principal is an authenticated, admitted gateway user.
type Principal struct {
	User     string
	Role     string
	Database string
	Source   string
	Session  uint64
	// Device is the managed device the session came from ("" if none).
	Device string
}
