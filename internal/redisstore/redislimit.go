package redisstore

import (
	"context"
	"net/netip"
	"strconv"
	"time"
	"wxlogin/internal/redis"
)

// This file is the login limit (internal/limits) shared by the wxlogins on
// one Redis (-redis): each client address's token bucket at
// wx:{l:<address>}, taken by one script, so a client that spreads its
// logins over the instances gets the one rate, not one per instance. A
// bucket expires once it would be full again.

// LoginLimiter is the login limit in Redis, shared by the instances on it.
type LoginLimiter struct {
	rc          *redis.Client
	now         func() time.Time
	rate, burst float64 // tokens per second, and at most
}

// NewLoginLimiter allows perMinute logins a minute per address, burst of
// them at once, as limits.NewLoginLimiter does on one instance. perMinute
// 0 turns limiting off: it returns nil, which allows everything.
func NewLoginLimiter(rc *redis.Client, perMinute, burst int, now func() time.Time) *LoginLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &LoginLimiter{rc: rc, now: now, rate: float64(perMinute) / 60, burst: float64(max(burst, 1))}
}

// takeTokenScript refills the bucket for the time since it was last seen,
// takes a token if there is one, and answers {1} or {0, ms until one}.
var takeTokenScript = redis.NewScript(`
local b = redis.call('HMGET', KEYS[1], 't', 'a')
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]) / 1000, tonumber(ARGV[3])
local tokens, at = burst, now
if b[1] then tokens, at = tonumber(b[1]), tonumber(b[2]) end
if now > at then tokens, at = math.min(burst, tokens + (now - at) * rate), now end
local ok = tokens >= 1
if ok then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'a', string.format('%d', at))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((burst - tokens) / rate) + 1000))
if ok then return {1} end
return {0, string.format('%d', math.ceil((1 - tokens) / rate))}
`)

// AllowLogin takes a token of addr's bucket, or says how long until there
// is one.
func (l *LoginLimiter) AllowLogin(ctx context.Context, addr netip.Addr) (bool, time.Duration, error) {
	if l == nil {
		return true, 0, nil
	}
	reply, err := takeTokenScript.Run(ctx, l.rc, []string{"wx:{l:" + addr.String() + "}"},
		strconv.FormatInt(l.now().UnixMilli(), 10), strconv.FormatFloat(l.rate, 'g', -1, 64), strconv.FormatFloat(l.burst, 'g', -1, 64))
	if err != nil {
		return false, 0, unavailable(err)
	}
	r, _ := reply.([]any)
	if len(r) > 0 && r[0] == int64(1) {
		return true, 0, nil
	}
	var wait int64
	if len(r) == 2 {
		s, _ := r[1].(string)
		wait, _ = strconv.ParseInt(s, 10, 64)
	}
	return false, time.Duration(wait) * time.Millisecond, nil
}
