package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoginLimiterBucket(t *testing.T) {
	clock := newFakeClock()
	l := newLoginLimiter(60, 3, clock.clock()) // one a second, three at once
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
	if newLoginLimiter(0, 100, clock.clock()) != nil {
		t.Error("-login-rate 0 made a limiter; want none")
	}
	var off *loginLimiter
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
		if ka, kb := limitKey(netip.MustParseAddr(tt.a)), limitKey(netip.MustParseAddr(tt.b)); ka != kb {
			t.Errorf("limitKey(%s) = %v, limitKey(%s) = %v; want one key", tt.a, ka, tt.b, kb)
		}
	}
	if limitKey(netip.MustParseAddr("2001:db8:1:2::1")) == limitKey(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("two /64s share a key")
	}
	if limitKey(netip.MustParseAddr("203.0.113.9")) == limitKey(netip.MustParseAddr("203.0.113.10")) {
		t.Error("two IPv4 addresses share a key")
	}
}

// However many addresses log in, the limiter keeps at most max buckets, and
// it forgets full buckets, which change nothing, before any other.
func TestLoginLimiterMemoryIsBounded(t *testing.T) {
	clock := newFakeClock()
	l := newLoginLimiter(60, 5, clock.clock())
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
	got, err := parseTrustedProxies(" 10.0.0.0/8, 192.0.2.1 ,2001:db8::/32,")
	want := "[10.0.0.0/8 192.0.2.1/32 2001:db8::/32]"
	if err != nil || fmt.Sprint(got) != want {
		t.Errorf("parseTrustedProxies = %v, %v; want %s", got, err, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0"} {
		if _, err := parseTrustedProxies(bad); err == nil {
			t.Errorf("parseTrustedProxies(%q) succeeded; want an error", bad)
		}
	}
}

func TestClientAddr(t *testing.T) {
	proxies, err := parseTrustedProxies("10.0.0.0/8, 2001:db8::/32")
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
			if got := proxies.clientAddr(r); got != netip.MustParseAddr(tt.want) {
				t.Errorf("clientAddr = %v; want %s", got, tt.want)
			}
		})
	}
}

// Over the limit, POST /login answers 429 with status 7 and a Retry-After,
// without reading the body: the code is not spent and WeChat is not called.
func TestLoginRateLimit(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		proxies, _ := parseTrustedProxies("10.0.0.1")
		a := newTestApp(t, appOptions{store: store, loginRate: 60, loginBurst: 2, proxies: proxies, quiet: true})
		h := a.handler

		login := func(from, code string, xff ...string) reply {
			r := httptest.NewRequestWithContext(t.Context(), "POST", "/login", strings.NewReader(`{"code":"`+code+`"}`))
			r.RemoteAddr = from
			r.Header.Set("Content-Type", jsonCT)
			for _, v := range xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return parseReply(t, w.Result())
		}
		for i := range 2 {
			if got := login("203.0.113.5:1000", a.fake.issueCode("wxapp", "alice")); got.env.Status != statusOK {
				t.Fatalf("login %d = %s; want ok", i+1, got.raw)
			}
		}
		code := a.fake.issueCode("wxapp", "alice")
		got := login("203.0.113.5:1000", code)
		if got.code != http.StatusTooManyRequests || got.env.Status != statusRateLimited || got.env.Msg != msgRateLimited {
			t.Fatalf("third login = %d %s; want 429, status 7", got.code, got.raw)
		}
		if s, err := strconv.Atoi(got.header.Get("Retry-After")); err != nil || s != 1 {
			t.Errorf("Retry-After = %q; want 1 (one login a second)", got.header.Get("Retry-After"))
		}
		if other := login("10.0.0.1:1000", a.fake.issueCode("wxapp", "bob"), "198.51.100.9"); other.env.Status != statusOK {
			t.Errorf("login of another client through the trusted proxy = %s; want ok", other.raw)
		}
		if spoof := login("203.0.113.5:1000", a.fake.issueCode("wxapp", "bob"), "198.51.100.10"); spoof.env.Status != statusRateLimited {
			t.Errorf("a limited client naming another address in X-Forwarded-For = %s; want status 7", spoof.raw)
		}
		a.clock.Advance(time.Second)
		if again := login("203.0.113.5:1000", code); again.env.Status != statusOK {
			t.Errorf("the refused code, a second later = %s; want ok: the refusal must not spend it", again.raw)
		}
	})
}
