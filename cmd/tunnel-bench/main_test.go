package main

import (
	"io"
	"testing"

	"github.com/enhanced-tunnel/tunnel/internal/benchrig"
)

func TestParseSmokeKeepsGivenFlags(t *testing.T) {
	cfg, err := parse([]string{"-smoke", "-rounds", "3", "-bin", "/b"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := benchrig.SmokeConfig()
	want.Rounds, want.BinDir = 3, "/b"
	if cfg != want {
		t.Errorf("got %+v, want %+v", cfg, want)
	}
}

func TestParseDefaults(t *testing.T) {
	cfg, err := parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg != benchrig.DefaultConfig() {
		t.Errorf("got %+v, want the defaults", cfg)
	}
}
