package main

import "testing"

func TestQuantile(t *testing.T) {
	v := []float64{0.95, 0.81, 1.04, 0.97, 0.84}
	for _, c := range []struct{ q, want float64 }{
		{0, 0.81}, {0.25, 0.84}, {0.5, 0.95}, {0.75, 0.97}, {1, 1.04},
		{0.125, 0.825}, // halfway between the first two order statistics
	} {
		if got := quantile(v, c.q); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if v[0] != 0.95 {
		t.Errorf("quantile sorted its argument in place: %v", v)
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile of nothing = %v, want 0", got)
	}
	if got := countBelow(v, 0.9); got != 2 {
		t.Errorf("countBelow(0.9) = %d, want 2", got)
	}
}
