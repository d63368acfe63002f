package main

import (
	"testing"
	"time"
)

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Time
		wantErr  bool
	}{
		{name: "date is the end of that day", in: "2027-03-31", want: time.Date(2027, 3, 31, 23, 59, 59, 0, time.UTC)},
		{name: "rfc3339", in: "2027-01-01T09:00:00+09:00", want: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "days", in: "90d", want: now.Add(90 * 24 * time.Hour)},
		{name: "hours", in: "8h", want: now.Add(8 * time.Hour)},
		{name: "garbage", in: "next tuesday", wantErr: true},
		{name: "zero", in: "0d", wantErr: true},
		{name: "negative", in: "-5h", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseExpiry(tt.in, now)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseExpiry(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("parseExpiry(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}
