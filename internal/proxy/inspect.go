package proxy

import "github.com/jackc/pgx/v5/pgproto3"

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
	// Statement is called for every Query, Parse and FunctionCall before it
	// is forwarded. A non-nil Refusal refuses it: the upstream never sees
	// the statement and the client gets the refusal in its place, in order.
	Statement(st *Statement) *Refusal
	// Result is called with each RowDescription the upstream sends. The
	// RowFilter it returns (nil: rows pass unchanged) sees every DataRow
	// until the result ends.
	//
	// In the extended protocol rows often arrive without a RowDescription
	// in the same response (the client described the statement when it
	// prepared it, or never did). Then Result is called with nil before
	// the first row: the inspector does not know the columns and must
	// decide anyway (an inspector that masks should refuse, or the
	// gateway must first learn the columns, for example by sending its own
	// Describe after each Bind). Rows are never passed on unseen.
	//
	// COPY TO STDOUT data is not shown to the inspector: decide COPY (and
	// COPY (SELECT ...)) when its statement comes to Statement.
	Result(rd *pgproto3.RowDescription) RowFilter
}

// RowFilter rewrites one result row in place (values are the column values
// in the row's format; nil is SQL NULL). A non-nil Refusal ends the
// statement: the row is not sent.
type RowFilter func(values [][]byte) *Refusal

// Statement is a client statement as the gateway sees it.
type Statement struct {
	// Kind is the message that carried it: 'Q' (Query), 'P' (Parse) or 'F'
	// (FunctionCall, whose Text is empty).
	Kind byte
	// Text is the SQL exactly as the client sent it. It may hold literal
	// values: never log it; the audit log gets Redacted.
	Text string
	// Redacted is Text with literal values replaced by placeholders.
	Redacted string
	// Name is the prepared statement name of a Parse ("" is unnamed).
	Name string
	// Principal is who sent it.
	Principal Principal
}

// Principal is an authenticated, admitted gateway user.
type Principal struct {
	User     string
	Role     string
	Database string
	Source   string
	Session  uint64
}
