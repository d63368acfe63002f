package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	tm := time.Date(2026, 11, 22, 9, 0, 0, 123456789, time.FixedZone("JST", 9*3600))
	tests := []struct {
		name string
		e    Event
	}{
		{name: "minimal", e: Event{Time: tm, Type: SessionEnd}},
		{name: "full", e: Event{Time: tm, Type: Statement, Session: 42, User: "alice", Role: "analyst", Source: "127.0.0.1:5000",
			Database: "pharma", Reason: "r", Statement: "SELECT * FROM hcp WHERE id = $1", Protocol: "simple", Rows: 733820,
			Duration: 12.345, Outcome: OutcomeOK, SQLState: "00000", Actor: "root"}},
		{name: "escapes", e: Event{Time: tm, Type: Statement, Statement: "a\"b\\c\nd\te\x01f\u2028g 名前 \xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.e.AppendJSON(nil)
			var back Event
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("not JSON: %s: %v", got, err)
			}
			want := tt.e
			want.Time = want.Time.UTC()
			want.Statement = strings.ToValidUTF8(want.Statement, "\ufffd")
			if back != want {
				t.Fatalf("round trip:\n got %+v\nwant %+v", back, want)
			}
			std, _ := json.Marshal(want)
			if !bytes.Equal(got, std) && tt.name != "escapes" {
				t.Fatalf("differs from encoding/json:\n got %s\nwant %s", got, std)
			}
		})
	}
}

func TestFileWritesLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "audit.jsonl")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if err := f.Record(Event{Type: Statement, Rows: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	for i, l := range lines {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Rows != int64(i) {
			t.Fatalf("line %d: %q %v", i, l, err)
		}
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	if err := f.Record(Event{Type: Statement}); err == nil {
		t.Fatal("Record after Close succeeded")
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("plain")
	f.Add("\"\\\n\x00\xff\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		var out string
		if err := json.Unmarshal(appendString(nil, s), &out); err != nil {
			t.Fatalf("invalid JSON for %q: %v", s, err)
		}
		// Converting to runes turns each invalid byte into U+FFFD, as
		// appendString does.
		if want := string([]rune(s)); out != want {
			t.Fatalf("round trip %q -> %q, want %q", s, out, want)
		}
	})
}

func TestAppendMillisMatchesStrconv(t *testing.T) {
	check := func(ms float64) {
		t.Helper()
		want := strconv.AppendFloat(nil, ms, 'f', -1, 64)
		if got := appendMillis(nil, ms); string(got) != string(want) {
			t.Fatalf("appendMillis(%v) = %s, strconv says %s", ms, got, want)
		}
	}
	for us := int64(0); us < 200000; us++ {
		check(float64(us) / 1000)
	}
	for _, us := range []int64{999999999, 1234567890123, 999999999999999, 1000000000000000, 123456789012345678} {
		check(float64(us) / 1000)
	}
	for _, ms := range []float64{0.0001, 0.1234, 1e-9, 1.0000001, -0.5, -3, 1e300, 12.3456789} {
		check(ms)
	}
}

func TestTimeCacheMatchesAppendFormat(t *testing.T) {
	var tc timeCache
	base := time.Date(2026, 11, 22, 23, 59, 58, 0, time.FixedZone("JST", 9*3600))
	var times []time.Time
	for _, ns := range []int{0, 1, 10, 100, 120000000, 123456789, 999999999, 500000000, 100000} {
		for s := 0; s < 3; s++ { // the cache kept, then a new second, across midnight UTC+9
			times = append(times, base.Add(time.Duration(s)*time.Second+time.Duration(ns)))
		}
	}
	times = append(times, time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Unix(0, 0), time.Unix(1<<33, 7))
	for _, tm := range times {
		want := tm.UTC().AppendFormat(nil, time.RFC3339Nano)
		if got := tc.append(nil, tm); string(got) != string(want) {
			t.Fatalf("%v: got %s, want %s", tm, got, want)
		}
		if got := (*timeCache)(nil).append(nil, tm); string(got) != string(want) {
			t.Fatalf("%v without cache: got %s, want %s", tm, got, want)
		}
	}
}

// BenchmarkAppendJSON encodes a typical statement event, as the gateway
// does once per statement.
func BenchmarkAppendJSON(b *testing.B) {
	e := Event{Time: time.Now(), Type: Statement, Session: 187, User: "bench", Role: "bench", Source: "127.0.0.1:58720",
		Database: "pharma", Statement: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", Protocol: "extended",
		Rows: 1, Duration: 0.062, Outcome: OutcomeOK}
	var tc timeCache
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = e.appendJSON(buf[:0], &tc)
	}
}
