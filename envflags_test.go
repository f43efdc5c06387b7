package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// envFlagSet is the flags of envflags.go on an environment of env.
type envFlagSet struct {
	e    *envFlags
	addr string
	ttl  time.Duration
	rate int
	mock optionalBool
}

func newEnvFlagSet(env map[string]string) *envFlagSet {
	fs := flag.NewFlagSet("wxlogin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := &envFlagSet{e: &envFlags{fs: fs, getenv: func(k string) string { return env[k] }}}
	s.e.string(&s.addr, "addr", "WXLOGIN_ADDR", "127.0.0.1:8080", "listen address")
	s.e.duration(&s.ttl, "token-ttl", "WXLOGIN_TOKEN_TTL", 2*time.Hour, "token lifetime")
	s.e.int(&s.rate, "login-rate", "WXLOGIN_LOGIN_RATE", 300, "logins a minute")
	s.e.bool(&s.mock, "mock", "WXLOGIN_MOCK", "mock mode")
	return s
}

func (s *envFlagSet) parse(args ...string) error { return s.e.fs.Parse(args) }

func TestEnvFlagsDefaultsComeFromTheEnvironment(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantAddr string
		wantTTL  time.Duration
		wantRate int
		wantMock string // optionalBool's String: auto, true or false
	}{
		{"defaults", nil, nil, "127.0.0.1:8080", 2 * time.Hour, 300, "auto"},
		{"environment", map[string]string{"WXLOGIN_ADDR": ":9000", "WXLOGIN_TOKEN_TTL": "30m", "WXLOGIN_LOGIN_RATE": "0", "WXLOGIN_MOCK": "false"},
			nil, ":9000", 30 * time.Minute, 0, "false"},
		{"a flag wins over its variable", map[string]string{"WXLOGIN_ADDR": ":9000", "WXLOGIN_TOKEN_TTL": "30m", "WXLOGIN_MOCK": "false"},
			[]string{"-addr", ":9001", "-token-ttl", "1h", "-mock"}, ":9001", time.Hour, 300, "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newEnvFlagSet(tt.env)
			if err := s.parse(tt.args...); err != nil {
				t.Fatal(err)
			}
			if len(s.e.errs) > 0 {
				t.Fatalf("errors %v", s.e.errs)
			}
			if s.addr != tt.wantAddr || s.ttl != tt.wantTTL || s.rate != tt.wantRate || s.mock.String() != tt.wantMock {
				t.Errorf("addr %q, ttl %v, rate %d, mock %s; want %q, %v, %d, %s",
					s.addr, s.ttl, s.rate, s.mock.String(), tt.wantAddr, tt.wantTTL, tt.wantRate, tt.wantMock)
			}
		})
	}
}

func TestEnvFlagsNameTheVariableThatDoesNotParse(t *testing.T) {
	s := newEnvFlagSet(map[string]string{"WXLOGIN_TOKEN_TTL": "2 hours", "WXLOGIN_LOGIN_RATE": "many", "WXLOGIN_MOCK": "maybe"})
	if err := s.parse(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, err := range s.e.errs {
		got = append(got, err.Error())
	}
	want := []string{
		`WXLOGIN_TOKEN_TTL: "2 hours" is not a duration like 2h or 30m`,
		`WXLOGIN_LOGIN_RATE: "many" is not a whole number`,
		`WXLOGIN_MOCK: "maybe" is not a boolean`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s.ttl != 2*time.Hour || s.rate != 300 {
		t.Errorf("after refused values: ttl %v, rate %d; want the defaults", s.ttl, s.rate)
	}
}

func TestEnvFlagsSetSaysWhetherASettingWasGiven(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want bool
	}{
		{"neither", nil, nil, false},
		{"by variable", map[string]string{"WXLOGIN_ADDR": ":9000"}, nil, true},
		{"by flag", nil, []string{"-addr", "127.0.0.1:8080"}, true}, // the default's value, but given
	} {
		s := newEnvFlagSet(tt.env)
		if err := s.parse(tt.args...); err != nil {
			t.Fatal(err)
		}
		if got := s.e.set("addr", "WXLOGIN_ADDR"); got != tt.want {
			t.Errorf("%s: set = %v; want %v", tt.name, got, tt.want)
		}
	}
}
