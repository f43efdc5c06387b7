package limits

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
	"wxlogin/internal/clock"
)

// The login limit is per client address: a token bucket for each
// address, so that one client cannot spend the app's WeChat quota (code2Session
// has one per minute, WECHAT.md §1) or try codes by the thousand.

// maxLimitedAddresses bounds the limiter's memory (about 60 bytes an
// address) however many addresses it sees.
const maxLimitedAddresses = 100_000

// LoginLimiter is a token bucket per client address: each login takes a
// token, and tokens come back at rate per second up to burst. An address it
// has no bucket for has a full one.
type LoginLimiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int         // buckets kept at most
	clock clock.Clock // rates run on its monotonic side

	mu      sync.Mutex // guards buckets
	buckets map[netip.Addr]bucket
}

// bucket is an address's tokens as of a moment, on the monotonic clock.
type bucket struct {
	tokens float64
	at     int64
}

// NewLoginLimiter allows perMinute logins a minute per address, burst of
// them at once. perMinute 0 turns limiting off: it returns nil, which
// allows everything.
func NewLoginLimiter(perMinute, burst int, c clock.Clock) *LoginLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &LoginLimiter{
		rate: float64(perMinute) / 60, burst: float64(max(burst, 1)), max: maxLimitedAddresses, clock: c,
		buckets: map[netip.Addr]bucket{},
	}
}

// allow takes a token of addr's bucket. When there is none, it reports how
// long until there is.
func (l *LoginLimiter) allow(addr netip.Addr) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	now := int64(l.clock.Elapsed())
	l.mu.Lock()
	defer l.mu.Unlock()
	b, known := l.buckets[addr]
	if !known {
		l.makeRoomLocked(now)
		b = bucket{tokens: l.burst, at: now}
	}
	b = l.refill(b, now)
	if b.tokens < 1 {
		l.buckets[addr] = b
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	l.buckets[addr] = b
	return true, 0
}

// AllowLogin is allow as the handlers ask any login limit, with a context
// and an error (a limit kept in Redis may fail); this one never fails.
func (l *LoginLimiter) AllowLogin(_ context.Context, addr netip.Addr) (bool, time.Duration, error) {
	ok, wait := l.allow(addr)
	return ok, wait, nil
}

// refill adds the tokens earned since b.at.
func (l *LoginLimiter) refill(b bucket, now int64) bucket {
	if elapsed := float64(now-b.at) / float64(time.Second); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed*l.rate)
		b.at = now
	}
	return b
}

// makeRoomLocked keeps the buckets under max before one is added. Full
// buckets go first: forgetting them changes nothing. If that frees less
// than an eighth, arbitrary buckets go too, which gives those addresses a
// fresh bucket; that leniency under a flood of addresses is the price of
// bounded memory. Freeing an eighth at a time keeps the cost per login
// constant. l.mu is held.
func (l *LoginLimiter) makeRoomLocked(now int64) {
	if len(l.buckets) < l.max {
		return
	}
	target := l.max - l.max/8
	for addr, b := range l.buckets {
		if l.refill(b, now).tokens >= l.burst {
			delete(l.buckets, addr)
		}
	}
	for addr := range l.buckets {
		if len(l.buckets) <= target {
			break
		}
		delete(l.buckets, addr)
	}
}

// Key is the address a client is counted under: IPv4 addresses one by
// one, IPv6 by /64, the block one subscriber usually gets.
func Key(addr netip.Addr) netip.Addr {
	if addr.Is4() {
		return addr
	}
	p, err := addr.Prefix(64)
	if err != nil {
		return addr // Not an address: counted as itself.
	}
	return p.Addr()
}

// TrustedProxies are the peers whose X-Forwarded-For wxlogin believes:
// the reverse proxies in front of it. Anyone else could write anything there.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies reads a comma-separated list of CIDRs or addresses.
func ParseTrustedProxies(s string) (TrustedProxies, error) {
	var proxies TrustedProxies
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, addrErr := netip.ParseAddr(f)
			if addrErr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an IP address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		proxies = append(proxies, p.Masked())
	}
	return proxies, nil
}

func (t TrustedProxies) trusts(a netip.Addr) bool {
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the address a request comes from. The peer's address,
// unless the peer is a trusted proxy: then X-Forwarded-For is read from the
// right, each trusted proxy having appended the address it got the request
// from, and the first address not of a trusted proxy is the client. What a
// client wrote to the left of that is not believed.
func (t TrustedProxies) ClientAddr(r *http.Request) netip.Addr {
	client := peerAddr(r)
	if !t.trusts(client) {
		return client
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // A hop a trusted proxy did not write: stop believing here.
		}
		client = hop.Unmap()
		if !t.trusts(client) {
			break
		}
	}
	return client
}

// Forwarded is the client a trusted proxy forwarded r for, as ClientAddr
// finds it; ok is false when r's peer is no trusted proxy, and the peer is
// the client.
func (t TrustedProxies) Forwarded(r *http.Request) (client netip.Addr, ok bool) {
	if !t.trusts(peerAddr(r)) {
		return netip.Addr{}, false
	}
	return t.ClientAddr(r), true
}

// peerAddr is the address of the connection's other end; not valid only
// for a request built by hand in a test.
func peerAddr(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return peer.Addr().Unmap()
}
