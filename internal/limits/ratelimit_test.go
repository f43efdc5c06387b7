package limits

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
	"wxlogin/internal/testkit"
)

func TestLoginLimiterBucket(t *testing.T) {
	clock := testkit.NewFakeClock()
	l := NewLoginLimiter(60, 3, clock.Clock()) // one a second, three at once
	a, b := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("198.51.100.8")
	steps := []struct {
		advance time.Duration
		addr    netip.Addr
		ok      bool
		wait    time.Duration // when refused
	}{
		{0, a, true, 0},
		{0, a, true, 0},
		{0, a, true, 0},
		{0, a, false, time.Second}, // the burst is spent
		{0, b, true, 0},            // another address has its own bucket
		{400 * time.Millisecond, a, false, 600 * time.Millisecond},
		{600 * time.Millisecond, a, true, 0}, // one token back after a second
		{0, a, false, time.Second},
		{time.Hour, a, true, 0}, // refilled, but never past the burst
		{0, a, true, 0},
		{0, a, true, 0},
		{0, a, false, time.Second},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		ok, wait := l.allow(s.addr)
		if ok != s.ok || (!ok && (wait < s.wait-time.Millisecond || wait > s.wait+time.Millisecond)) {
			t.Fatalf("step %d: allow(%v) = %v, wait %v; want %v, wait %v", i, s.addr, ok, wait, s.ok, s.wait)
		}
	}
	if NewLoginLimiter(0, 100, clock.Clock()) != nil {
		t.Error("-login-rate 0 made a limiter; want none")
	}
	var off *LoginLimiter
	if ok, _ := off.allow(a); !ok {
		t.Error("no limiter refused a login")
	}
}

func TestLimitKeyGroupsIPv6By64(t *testing.T) {
	tests := []struct{ a, b string }{
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2:bbbb::2"},
		{"203.0.113.9", "203.0.113.9"},
	}
	for _, tt := range tests {
		if ka, kb := Key(netip.MustParseAddr(tt.a)), Key(netip.MustParseAddr(tt.b)); ka != kb {
			t.Errorf("Key(%s) = %v, Key(%s) = %v; want one key", tt.a, ka, tt.b, kb)
		}
	}
	if Key(netip.MustParseAddr("2001:db8:1:2::1")) == Key(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("two /64s share a key")
	}
	if Key(netip.MustParseAddr("203.0.113.9")) == Key(netip.MustParseAddr("203.0.113.10")) {
		t.Error("two IPv4 addresses share a key")
	}
}

// However many addresses log in, the limiter keeps at most max buckets, and
// it forgets full buckets, which change nothing, before any other.
func TestLoginLimiterMemoryIsBounded(t *testing.T) {
	clock := testkit.NewFakeClock()
	l := NewLoginLimiter(60, 5, clock.Clock())
	l.max = 64
	for i := range 10_000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if n := len(l.buckets); n > l.max {
			t.Fatalf("after %d addresses the limiter holds %d buckets; want at most %d", i+1, n, l.max)
		}
	}

	l.buckets = map[netip.Addr]bucket{}
	greedy := netip.MustParseAddr("192.0.2.66")
	for range 5 {
		l.allow(greedy)
	}
	for i := range l.max - 1 {
		l.allow(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})) // one login each: one token short of full
	}
	clock.Advance(1500 * time.Millisecond) // the others are full again; greedy has 1.5 of 5
	l.allow(netip.MustParseAddr("198.51.100.1"))
	if _, kept := l.buckets[greedy]; !kept || len(l.buckets) != 2 {
		t.Errorf("after making room: %d buckets, greedy's kept: %v; want 2, with greedy's", len(l.buckets), kept)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.1 ,2001:db8::/32,")
	want := "[10.0.0.0/8 192.0.2.1/32 2001:db8::/32]"
	if err != nil || fmt.Sprint(got) != want {
		t.Errorf("ParseTrustedProxies = %v, %v; want %s", got, err, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) succeeded; want an error", bad)
		}
	}
}

func TestClientAddr(t *testing.T) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"a client, directly", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"a client's own X-Forwarded-For is not believed", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"through a trusted proxy", "10.0.0.2:4000", []string{"203.0.113.5"}, "203.0.113.5"},
		{"a spoofed entry left of the proxy's", "10.0.0.2:4000", []string{"198.51.100.1, 203.0.113.5"}, "203.0.113.5"},
		{"two trusted proxies", "10.0.0.2:4000", []string{"203.0.113.5, 10.1.1.1"}, "203.0.113.5"},
		{"two headers, in order", "10.0.0.2:4000", []string{"198.51.100.1", "203.0.113.5"}, "203.0.113.5"},
		{"a trusted proxy sent none", "10.0.0.2:4000", nil, "10.0.0.2"},
		{"garbage stops the walk", "10.0.0.2:4000", []string{"203.0.113.5, nonsense, 10.1.1.1"}, "10.1.1.1"},
		{"only trusted hops", "10.0.0.2:4000", []string{"10.9.9.9"}, "10.9.9.9"},
		{"IPv6 through a trusted proxy", "[2001:db8::1]:4000", []string{"2001:db8:ffff::7, 2a00:1450::5"}, "2a00:1450::5"},
		{"IPv4 on an IPv6 socket", "[::ffff:203.0.113.5]:4000", nil, "203.0.113.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/login", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := proxies.ClientAddr(r); got != netip.MustParseAddr(tt.want) {
				t.Errorf("ClientAddr = %v; want %s", got, tt.want)
			}
		})
	}
}

// Forwarded names the client a trusted proxy forwarded for, as ClientAddr
// does, and says when the peer is no trusted proxy (the access log then
// names the peer).
func TestForwarded(t *testing.T) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		remote, xff string
		want        string // "" for none: the peer is no trusted proxy
	}{
		{"10.0.0.2:4000", "203.0.113.5", "203.0.113.5"},
		{"10.0.0.2:4000", "", "10.0.0.2"},
		{"203.0.113.5:4000", "198.51.100.1", ""},
	} {
		r := httptest.NewRequest("GET", "/healthz", nil)
		r.RemoteAddr = tt.remote
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		client, ok := proxies.Forwarded(r)
		if want := tt.want != ""; ok != want || ok && client != netip.MustParseAddr(tt.want) {
			t.Errorf("Forwarded from %s, X-Forwarded-For %q = %v, %v; want %q", tt.remote, tt.xff, client, ok, tt.want)
		}
	}
}

// A step back of the wall clock does not lock a client out of logins: its
// tokens come back as time passes.
func TestAWallClockStepBackLocksNoClientOut(t *testing.T) {
	clock := testkit.NewFakeClock()
	l := NewLoginLimiter(60, 2, clock.Clock()) // one a second, two at once
	addr := netip.MustParseAddr("192.0.2.1")
	l.allow(addr)
	l.allow(addr)
	if ok, _ := l.allow(addr); ok {
		t.Fatal("a third login at once was allowed; the burst is 2")
	}
	clock.StepWall(-time.Hour)
	clock.Advance(time.Second)
	if ok, wait := l.allow(addr); !ok {
		t.Errorf("a second after the wall clock stepped back an hour, a login is refused for %v; want it allowed", wait)
	}
}
