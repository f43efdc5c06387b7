package redisstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"wxlogin/internal/redis"
)

// This file shares each app's access_token among the wxlogins on one
// Redis (-redis), so that N instances make one fetch, not N. The token and
// when to stop using it live at wx:{a:<appid>}; a fetch is made by the one
// instance that holds wx:{a:<appid>}:lock (SET NX PX, so a holder that dies
// frees it when it expires), while the others watch for its result. Both
// keys share a slot. wxlogin fetches with getStableAccessToken in normal
// mode (WECHAT.md §4), so even two fetches never invalidate each other's
// token; the lock saves WeChat's daily quota and the wait.

// AccessTokens are the apps' access_tokens, shared in Redis by the
// instances on it.
type AccessTokens struct {
	rc   *redis.Client
	now  func() time.Time
	poll time.Duration // how often an instance waiting for another's fetch looks
}

// NewAccessTokens shares the access_tokens on rc; an instance waiting
// for another's fetch looks again every poll.
func NewAccessTokens(rc *redis.Client, now func() time.Time, poll time.Duration) *AccessTokens {
	return &AccessTokens{rc: rc, now: now, poll: poll}
}

func accessTokenKey(appID string) string { return "wx:{a:" + appID + "}" }

// Get returns appID's shared token and until when to use it, or fetches
// it with fetch under the lock, or waits for the instance that holds the
// lock, bounded by ctx.
func (r *AccessTokens) Get(ctx context.Context, appID string, fetch func(ctx context.Context) (string, time.Time, error)) (string, time.Time, error) {
	key := accessTokenKey(appID)
	lock, holder := key+":lock", randomText(16, hex.EncodeToString)
	lockFor := 30 * time.Second
	if deadline, ok := ctx.Deadline(); ok {
		lockFor = max(time.Until(deadline), time.Second)
	}
	for {
		replies, err := r.rc.Pipeline(ctx, [][]string{{"GET", key}, {"SET", lock, holder, "NX", "PX", strconv.FormatInt(lockFor.Milliseconds(), 10)}})
		if err == nil {
			err = firstError(replies)
		}
		if err != nil {
			return "", time.Time{}, unavailable(err)
		}
		token, until, ok := parseSharedToken(replies[0], r.now())
		won := replies[1] == "OK"
		if ok {
			if won {
				r.unlock(ctx, lock, holder)
			}
			return token, until, nil
		}
		if won {
			token, until, err := fetch(ctx)
			if err == nil && until.After(r.now()) {
				ms := strconv.FormatInt(until.Sub(r.now()).Milliseconds(), 10)
				if _, err := r.rc.Do(ctx, "SET", key, strconv.FormatInt(until.UnixMilli(), 10)+" "+token, "PX", ms); err != nil {
					r.unlock(ctx, lock, holder)
					return "", time.Time{}, unavailable(err)
				}
			}
			r.unlock(ctx, lock, holder)
			return token, until, err
		}
		// Another instance is fetching: look again shortly, until it has
		// or its lock is gone (it failed, and this one tries).
		t := time.NewTimer(r.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", time.Time{}, fmt.Errorf("waiting for another instance's access_token fetch: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// parseSharedToken reads "<until, Unix ms> <token>", reporting whether it
// is a token still to be used at now.
func parseSharedToken(v any, now time.Time) (string, time.Time, bool) {
	s, _ := v.(string)
	ms, token, found := strings.Cut(s, " ")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !found || err != nil || token == "" {
		return "", time.Time{}, false
	}
	until := time.UnixMilli(n)
	return token, until, now.Before(until)
}

// unlockScript frees the lock if this instance still holds it.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// unlock frees the lock; if Redis cannot be told, the lock expires.
func (r *AccessTokens) unlock(ctx context.Context, lock, holder string) {
	unlockScript.Run(context.WithoutCancel(ctx), r.rc, []string{lock}, holder)
}

// dropScript deletes the shared token if it is still the refused one.
var dropScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, string.find(v, ' ') + 1) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Drop forgets appID's shared token if it is still token, which WeChat
// refused.
func (r *AccessTokens) Drop(ctx context.Context, appID, token string) error {
	_, err := dropScript.Run(ctx, r.rc, []string{accessTokenKey(appID)}, token)
	return unavailable(err)
}
