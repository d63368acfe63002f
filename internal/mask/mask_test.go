package mask

import (
	"encoding/binary"
	"testing"
)

func TestApplyText(t *testing.T) {
	m := New([]byte("test key"))
	tests := []struct {
		name string
		f    Function
		oid  uint32
		in   string
		want string
		null bool
	}{
		{name: "partial email", f: PartialEmail, oid: oidText, in: "kenji.sato@example.jp", want: "k***@example.jp"},
		{name: "partial email multibyte", f: PartialEmail, oid: oidText, in: "健二@example.jp", want: "健***@example.jp"},
		{name: "partial email without at", f: PartialEmail, oid: oidText, in: "nobody", want: RedactedText},
		{name: "redact", f: Redact, oid: oidVarchar, in: "佐藤 健二", want: RedactedText},
		{name: "redact a date", f: Redact, oid: oidDate, in: "1980-05-03", null: true},
		{name: "year ISO", f: YearOnly, oid: oidDate, in: "1980-05-03", want: "1980-01-01"},
		{name: "year SQL style", f: YearOnly, oid: oidDate, in: "05/03/1980", want: "01/01/1980"},
		{name: "year German style", f: YearOnly, oid: oidDate, in: "03.05.1980", want: "01.01.1980"},
		{name: "year BC", f: YearOnly, oid: oidDate, in: "0044-03-15 BC", want: "0044-01-01 BC"},
		{name: "year timestamptz", f: YearOnly, oid: oidTimestamptz, in: "2024-06-01 12:34:56.789+09", want: "2024-01-01 00:00:00"},
		{name: "year Postgres style with weekday", f: YearOnly, oid: oidTimestamptz, in: "Sat Jun 01 12:34:56 2024 JST", null: true},
		{name: "year of garbage", f: YearOnly, oid: oidDate, in: "12", null: true},
		{name: "null", f: Null, oid: oidText, in: "x", null: true},
		{name: "unknown function", f: "rot13", oid: oidText, in: "x", null: true},
		{name: "pseudonym int text", f: Pseudonym, oid: oidInt8, in: "42", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.Apply(tt.f, tt.oid, 0, []byte(tt.in))
			switch {
			case tt.null:
				if got != nil {
					t.Fatalf("got %q, want NULL", got)
				}
			case tt.want == "":
				if got == nil || string(got) == tt.in {
					t.Fatalf("got %q", got)
				}
			case string(got) != tt.want:
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPseudonymStableAcrossFormats(t *testing.T) {
	m := New([]byte("k"))
	bin := make([]byte, 8)
	binary.BigEndian.PutUint64(bin, 42)
	text := m.Apply(Pseudonym, oidInt8, 0, []byte("42"))
	b := m.Apply(Pseudonym, oidInt8, 1, bin)
	if len(b) != 8 {
		t.Fatalf("binary pseudonym has %d bytes", len(b))
	}
	if got := binary.BigEndian.Uint64(b); string(text) != itoa(got) {
		t.Fatalf("text %s, binary %d", text, got)
	}
	if a, b := m.Apply(Pseudonym, oidText, 0, []byte("x@example.jp")), m.Apply(Pseudonym, oidVarchar, 1, []byte("x@example.jp")); string(a) != string(b) {
		t.Fatalf("text %q, binary %q", a, b)
	}
	if a, b := string(m.Apply(Pseudonym, oidText, 0, []byte("a"))), string(New([]byte("other")).Apply(Pseudonym, oidText, 0, []byte("a"))); a == b {
		t.Fatal("pseudonym does not depend on the key")
	}
}

func itoa(n uint64) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

func TestYearOnlyBinary(t *testing.T) {
	m := New(nil)
	// 1980-05-03 is 7183 days before 2000-01-01.
	in := make([]byte, 4)
	days := int32(-7183)
	binary.BigEndian.PutUint32(in, uint32(days))
	out := m.Apply(YearOnly, oidDate, 1, in)
	// 1980-01-01 is 7305 days before 2000-01-01.
	if got := int32(binary.BigEndian.Uint32(out)); got != -7305 {
		t.Fatalf("got %d days, want -7305", got)
	}
	if m.Apply(YearOnly, oidDate, 1, []byte{1, 2}) != nil {
		t.Fatal("a short binary date was not NULLed")
	}
}

func TestStreamMatchesMasker(t *testing.T) {
	m := New([]byte("k"))
	s := m.Stream()
	for range 2 { // the second round comes from the cache
		for _, v := range []string{"佐藤 健二", "a@example.jp", "42"} {
			for _, oid := range []uint32{oidText, oidInt8} {
				if a, b := m.Apply(Pseudonym, oid, 0, []byte(v)), s.Apply(Pseudonym, oid, 0, []byte(v)); string(a) != string(b) {
					t.Fatalf("%q as %d: masker %q, stream %q", v, oid, a, b)
				}
			}
		}
	}
}

func TestStreamRowValuesDoNotClobber(t *testing.T) {
	s := New([]byte("k")).Stream()
	for i := range 100 { // enough rows for the buffer to grow and be reused
		s.Row()
		e := s.Apply(PartialEmail, oidText, 0, []byte("kenji.sato@example.jp"))
		d := s.Apply(YearOnly, oidDate, 0, []byte("1980-05-03"))
		e2 := s.Apply(PartialEmail, oidVarchar, 0, []byte("aya@hosp.example.jp"))
		if string(e) != "k***@example.jp" || string(d) != "1980-01-01" || string(e2) != "a***@hosp.example.jp" {
			t.Fatalf("row %d: %q %q %q", i, e, d, e2)
		}
	}
}
