package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sekisho/sekisho/internal/mask"
)

// BenchmarkMaskRow is the per-row cost of the demo analyst's masks on an
// hcp row (the masked bulk read's hot path, without the network).
func BenchmarkMaskRow(b *testing.B) {
	m := mask.New([]byte("bench key")).Stream()
	cols := []maskedColumn{
		{index: 1, fn: mask.Pseudonym, oid: 25}, {index: 2, fn: mask.Pseudonym, oid: 25},
		{index: 4, fn: mask.YearOnly, oid: 1082}, {index: 5, fn: mask.PartialEmail, oid: 25},
		{index: 7, fn: mask.Redact, oid: 25},
	}
	row := &pgproto3.DataRow{Values: [][]byte{[]byte("123456"), []byte("佐藤 健二"), []byte("サトウ ケンジ"), []byte("M"), []byte("1980-05-03"),
		[]byte("kenji.sato.123456@hosp.example.jp"), []byte("北ヶ丘総合病院"), []byte("東京都北ヶ丘1-2-3"), []byte("院長"), []byte("医師"), []byte("内科"), []byte("2024-01-01 00:00:00+09")}}
	body, _ := row.Encode(nil)
	body = body[5:]
	var out []byte
	var d pgproto3.DataRow // the session's decoder reuses its message too
	for b.Loop() {
		if err := d.Decode(body); err != nil {
			b.Fatal(err)
		}
		m.Row()
		for _, c := range cols {
			d.Values[c.index] = m.Apply(c.fn, c.oid, c.format, d.Values[c.index])
		}
		out, _ = d.Encode(out[:0])
	}
}
