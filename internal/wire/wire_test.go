package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func startupPacket(body []byte) []byte {
	b := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(4+len(body)))
	return append(b, body...)
}

func TestReadStartup(t *testing.T) {
	sm := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice", "database": "hcp"}}
	good, err := sm.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	v31 := bytes.Clone(good)
	binary.BigEndian.PutUint32(v31[4:], 3<<16|1)
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr error
	}{
		{name: "startup", in: good, want: "*pgproto3.StartupMessage"},
		{name: "startup 3.1 accepted for negotiation", in: v31, want: "*pgproto3.StartupMessage"},
		{name: "ssl request", in: startupPacket(binary.BigEndian.AppendUint32(nil, SSLRequestCode)), want: "*pgproto3.SSLRequest"},
		{name: "gssenc request", in: startupPacket(binary.BigEndian.AppendUint32(nil, GSSENCRequestCode)), want: "*pgproto3.GSSEncRequest"},
		{name: "cancel request", in: startupPacket(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, CancelRequestCode), 7), 9)), want: "*pgproto3.CancelRequest"},
		{name: "length below minimum", in: []byte{0, 0, 0, 3, 1, 2, 3}, wantErr: ErrMalformed},
		{name: "length above startup limit", in: []byte{0, 0, 0x30, 0, 0, 3, 0, 0}, wantErr: ErrMalformed},
		{name: "negative length", in: []byte{0xff, 0xff, 0xff, 0xff}, wantErr: ErrMalformed},
		{name: "protocol 2", in: startupPacket([]byte{0, 2, 0, 0, 'u', 0, 'x', 0, 0}), wantErr: ErrMalformed},
		{name: "http garbage", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantErr: ErrMalformed},
		{name: "ssl request with trailing bytes", in: startupPacket(append(binary.BigEndian.AppendUint32(nil, SSLRequestCode), 1)), wantErr: ErrMalformed},
		{name: "unterminated parameters", in: startupPacket([]byte{0, 3, 0, 0, 'u', 's', 'e', 'r'}), wantErr: ErrMalformed},
		{name: "truncated", in: good[:10], wantErr: io.ErrUnexpectedEOF},
		{name: "empty", in: nil, wantErr: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := ReadStartup(bytes.NewReader(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := typeName(msg); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *pgproto3.StartupMessage:
		return "*pgproto3.StartupMessage"
	case *pgproto3.SSLRequest:
		return "*pgproto3.SSLRequest"
	case *pgproto3.GSSEncRequest:
		return "*pgproto3.GSSEncRequest"
	case *pgproto3.CancelRequest:
		return "*pgproto3.CancelRequest"
	}
	return "?"
}

func TestReaderLimits(t *testing.T) {
	var stream []byte
	stream = AppendFrame(stream, 'Q', []byte("select 1\x00"))
	stream = AppendFrame(stream, 'Q', bytes.Repeat([]byte("x"), 100))
	r := NewReader(bytes.NewReader(stream), 64)
	typ, body, err := r.Next()
	if err != nil || typ != 'Q' || string(body) != "select 1\x00" {
		t.Fatalf("first frame: %q %q %v", typ, body, err)
	}
	if _, _, err := r.Next(); !errors.Is(err, ErrMessageTooLong) {
		t.Fatalf("oversized frame: err = %v, want ErrMessageTooLong", err)
	}

	r = NewReader(bytes.NewReader([]byte{'Q', 0, 0, 0, 2}), 64)
	if _, _, err := r.Next(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("length 2: err = %v, want ErrMalformed", err)
	}
	r = NewReader(bytes.NewReader([]byte{'Q', 0, 0, 0, 9, 'a'}), 64)
	if _, _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated body: err = %v, want ErrUnexpectedEOF", err)
	}
	r = NewReader(bytes.NewReader([]byte{'Q', 0, 0}), 64)
	if _, _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated header: err = %v, want ErrUnexpectedEOF", err)
	}
}

func FuzzReadStartup(f *testing.F) {
	sm := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "a", "database": "b"}}
	good, _ := sm.Encode(nil)
	f.Add(good)
	f.Add(startupPacket(binary.BigEndian.AppendUint32(nil, SSLRequestCode)))
	f.Add(startupPacket(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, CancelRequestCode), 7), 9)))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		msg, err := ReadStartup(bytes.NewReader(in))
		if err != nil {
			return
		}
		if s, ok := msg.(*pgproto3.StartupMessage); ok && s.ProtocolVersion>>16 != 3 {
			t.Fatalf("accepted protocol %d", s.ProtocolVersion)
		}
	})
}

func FuzzFrontendDecode(f *testing.F) {
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "select 1"},
		&pgproto3.Parse{Name: "s", Query: "select $1", ParameterOIDs: []uint32{23}},
		&pgproto3.Bind{PreparedStatement: "s", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 1}}, ResultFormatCodes: []int16{0}},
		&pgproto3.Execute{Portal: "", MaxRows: 10},
		&pgproto3.Describe{ObjectType: 'S', Name: "s"},
		&pgproto3.Close{ObjectType: 'P', Name: ""},
		&pgproto3.CopyData{Data: []byte("1\tx\n")},
		&pgproto3.CopyFail{Message: "no"},
		&pgproto3.FunctionCall{Function: 1, Arguments: [][]byte{{1}}, ResultFormatCode: 0},
	} {
		b, err := m.Encode(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 1<<16)
		var d FrontendDecoder
		for {
			typ, body, err := r.Next()
			if err != nil {
				return
			}
			if len(body) > 1<<16 {
				t.Fatalf("body of %d bytes passed a 64 KiB limit", len(body))
			}
			_, _ = d.Decode(typ, body)
		}
	})
}

func FuzzBackendDecode(f *testing.F) {
	for _, m := range []pgproto3.BackendMessage{
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("id"), TableOID: 1, TableAttributeNumber: 1, DataTypeOID: 20, DataTypeSize: 8, TypeModifier: -1}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("1"), nil}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P01", Message: "x"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
		&pgproto3.NotificationResponse{PID: 1, Channel: "c", Payload: "p"},
		&pgproto3.CopyOutResponse{OverallFormat: 1, ColumnFormatCodes: []uint16{1}},
	} {
		b, err := m.Encode(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 1<<16)
		var d BackendDecoder
		for {
			typ, body, err := r.Next()
			if err != nil {
				return
			}
			_, _ = d.Decode(typ, body)
		}
	})
}

// FuzzAuthMessages decodes what a client sends during SCRAM authentication
// (PasswordMessage-typed 'p' frames) the way the gateway does.
func FuzzAuthMessages(f *testing.F) {
	first, _ := (&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")}).Encode(nil)
	final, _ := (&pgproto3.SASLResponse{Data: []byte("c=biws,r=abc,p=AAAA")}).Encode(nil)
	f.Add(first)
	f.Add(final)
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), MaxAuthMessageLen)
		for {
			typ, body, err := r.Next()
			if err != nil {
				return
			}
			if typ != 'p' {
				continue
			}
			var a pgproto3.SASLInitialResponse
			if a.Decode(body) == nil && len(a.Data) > len(body) {
				t.Fatal("decoded more data than the message holds")
			}
			var b pgproto3.SASLResponse
			_ = b.Decode(body)
		}
	})
}

// FuzzFrame checks Frame against Reader.Next: the same messages, limits
// and errors from the same bytes, whole or cut short.
func FuzzFrame(f *testing.F) {
	f.Add([]byte{'Q', 0, 0, 0, 9, 'x', 'y', 'z', 0, 'S', 0, 0, 0, 4}, 16)
	f.Add([]byte{'Q', 0, 0, 0, 3}, 16)
	f.Add([]byte{'D', 0x7f, 0xff, 0xff, 0xff}, 1<<20)
	f.Add([]byte{'D', 0, 0, 0, 100, 1, 2}, 8)
	f.Fuzz(func(t *testing.T, b []byte, maxLen int) {
		if maxLen <= 0 || maxLen > 1<<24 {
			return // NewReader takes 0 and less as its default
		}
		r := NewReader(bytes.NewReader(b), maxLen)
		off := 0
		for {
			typ, body, n, ferr := Frame(b[off:], maxLen)
			rtyp, rbody, rerr := r.Next()
			switch {
			case ferr != nil:
				if rerr == nil || !errors.Is(rerr, ErrMalformed) && !errors.Is(rerr, ErrMessageTooLong) || errors.Is(ferr, ErrMalformed) != errors.Is(rerr, ErrMalformed) {
					t.Fatalf("at %d: Frame says %v, Next says %v", off, ferr, rerr)
				}
				return
			case n == 0:
				if rerr == nil {
					t.Fatalf("at %d: Frame wants more bytes, Next read a %q message", off, rtyp)
				}
				return
			}
			if rerr != nil || rtyp != typ || !bytes.Equal(rbody, body) {
				t.Fatalf("at %d: Frame read %q %x, Next %q %x (%v)", off, typ, body, rtyp, rbody, rerr)
			}
			off += n
		}
	})
}

// FuzzMessageFields checks ParseFields, QueryText, BindNames and
// ExecutePortal against pgproto3's decoders: the same verdict, the same
// names and text.
func FuzzMessageFields(f *testing.F) {
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{[]byte("42"), nil}, ResultFormatCodes: []int16{0, 1}},
		&pgproto3.Bind{},
		&pgproto3.Execute{Portal: "p", MaxRows: 5},
		&pgproto3.Parse{Name: "s1", Query: "SELECT $1::int", ParameterOIDs: []uint32{23}},
		&pgproto3.Parse{Query: "SELECT 1"},
		&pgproto3.Query{String: "SELECT 1"},
	} {
		b, _ := m.Encode(nil)
		f.Add(b[5:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Each reader against its pgproto3 decoder: the same verdict and,
		// when both accept, the same fields.
		for _, c := range []struct {
			what         string
			ours, theirs func() ([]string, error)
		}{
			{"Bind", func() ([]string, error) {
				portal, stmt, err := BindNames(body)
				return []string{string(portal), string(stmt)}, err
			}, func() ([]string, error) {
				var m pgproto3.Bind
				err := m.Decode(body)
				return []string{m.DestinationPortal, m.PreparedStatement}, err
			}},
			{"Parse", func() ([]string, error) {
				name, query, err := ParseFields(body)
				return []string{string(name), string(query)}, err
			}, func() ([]string, error) {
				var m pgproto3.Parse
				err := m.Decode(body)
				return []string{m.Name, m.Query}, err
			}},
			{"Query", func() ([]string, error) {
				text, err := QueryText(body)
				return []string{string(text)}, err
			}, func() ([]string, error) {
				var m pgproto3.Query
				err := m.Decode(body)
				return []string{m.String}, err
			}},
			{"Execute", func() ([]string, error) {
				portal, err := ExecutePortal(body)
				return []string{string(portal)}, err
			}, func() ([]string, error) {
				var m pgproto3.Execute
				err := m.Decode(body)
				return []string{m.Portal}, err
			}},
		} {
			got, err := c.ours()
			want, derr := c.theirs()
			if (derr == nil) != (err == nil) {
				t.Fatalf("%s: pgproto3 says %v, sekisho's reader says %v", c.what, derr, err)
			}
			if err == nil && !slices.Equal(got, want) {
				t.Fatalf("%s fields %q, pgproto3 %q", c.what, got, want)
			}
		}
	})
}

// ParseFields, QueryText, BindNames and ExecutePortal run for every
// statement the gateway relays; they must not allocate, on good or bad
// input.
func TestBindExecuteNamesDoNotAllocate(t *testing.T) {
	good, _ := (&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", Parameters: [][]byte{[]byte("42")}}).Encode(nil)
	exec, _ := (&pgproto3.Execute{Portal: "p"}).Encode(nil)
	for name, body := range map[string][]byte{"bind": good[5:], "bad bind": good[5:8], "execute": exec[5:], "bad execute": exec[5:6]} {
		if n := testing.AllocsPerRun(100, func() {
			_, _, _ = BindNames(body)
			_, _ = ExecutePortal(body)
			_, _, _ = ParseFields(body)
			_, _ = QueryText(body)
		}); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
}
