package redisstore

import (
	"net/netip"
	"testing"
	"time"
	"wxlogin/internal/testkit"
)

// One client's logins spread over two instances on one Redis draw on one
// bucket: a burst of 2 is 2 logins in all, not 2 on each; another client
// has its own; a second later the client has one more.
func TestInstancesOnOneRedisShareTheLoginLimit(t *testing.T) {
	srv := testkit.StartRedis(t)
	clock := testkit.NewFakeClock()
	a := NewLoginLimiter(srv.Client(t, "", ""), 60, 2, clock.Now)
	b := NewLoginLimiter(srv.Client(t, "", ""), 60, 2, clock.Now)
	client, other := netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("203.0.113.6")
	for i, l := range []*LoginLimiter{a, b, a, b} {
		ok, wait, err := l.AllowLogin(t.Context(), client)
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 2; ok != want {
			t.Errorf("login %d of one client, on instance %c: allowed %v; want %v", i+1, "abab"[i], ok, want)
		}
		if !ok && (wait <= 0 || wait > time.Second) {
			t.Errorf("login %d refused with Retry-After %v; want at most 1 s, one login a second", i+1, wait)
		}
	}
	if ok, _, _ := b.AllowLogin(t.Context(), other); !ok {
		t.Error("another client was refused")
	}
	clock.Advance(time.Second)
	if ok, _, _ := b.AllowLogin(t.Context(), client); !ok {
		t.Error("a second later, the client was refused; it has earned one login")
	}
	if ok, _, _ := a.AllowLogin(t.Context(), client); ok {
		t.Error("a second later, the client made two logins; it has earned one")
	}
}
