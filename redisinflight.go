package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"wxlogin/internal/redis"
)

// This file shares the code exchanges under way among the wxlogins on one
// Redis (-redis): a double tap whose two logins land on two instances makes
// one code2Session call, and both get its answer, as two logins on one
// instance do (singleflight.go). The first instance to see a code marks it
// at wx:{x:<appid>:<hash of the code>} (SET NX, expiring after the
// exchange's bound) and exchanges it; the others watch that key until the
// answer is there. The answer is only for the logins that waited for it,
// and stays for exchangeAnswerKept, long enough for their next look: a
// code sent again once its exchange has finished goes to WeChat, which
// refuses a spent code, as on one instance. The key holds a hash of the
// code, never the code.

// sharedExchanges is where instances sharing a store meet the exchanges
// under way: Redis's (redisExchanges), or nil for one instance.
type sharedExchanges interface {
	// Exchange returns the answer to code: of the exchange another
	// instance has under way, or of exchange, made here.
	Exchange(ctx context.Context, appID, code string, exchange func(ctx context.Context) (code2SessionResult, error)) (code2SessionResult, error)
}

// exchangeAnswerKept is how long an answer waits for the instances that
// were waiting for it: several of their looks.
const exchangeAnswerKept = 2 * time.Second

// redisExchanges is sharedExchanges in Redis.
type redisExchanges struct {
	rc      *redis.Client
	poll    time.Duration // how often a waiting instance looks
	pending time.Duration // how long a mark lasts: the bound of one exchange
}

// exchangeAnswer is an exchange's answer as the key holds it.
type exchangeAnswer struct {
	OpenID     string `json:"openid,omitempty"`
	SessionKey string `json:"session_key,omitempty"`
	UnionID    string `json:"unionid,omitempty"`
	Errcode    int    `json:"errcode,omitempty"` // WeChat refused: its errcode
	Failed     bool   `json:"failed,omitempty"`  // it failed otherwise (WeChat down, time up)
}

// errExchangeElsewhere is the failure of an exchange another instance made,
// other than WeChat's refusal: its cause is in that instance's log.
var errExchangeElsewhere = errors.New("wechat jscode2session: the exchange of this code failed on another instance")

func redisExchangeKey(appID, code string) string {
	sum := sha256.Sum256([]byte(code))
	return "wx:{x:" + appID + ":" + hex.EncodeToString(sum[:16]) + "}"
}

func (r *redisExchanges) Exchange(ctx context.Context, appID, code string, exchange func(ctx context.Context) (code2SessionResult, error)) (code2SessionResult, error) {
	key := redisExchangeKey(appID, code)
	waited := false // whether this login saw the exchange under way
	for {
		replies, err := r.rc.Pipeline(ctx, [][]string{
			{"SET", key, "", "NX", "PX", strconv.FormatInt(r.pending.Milliseconds(), 10)}, {"GET", key}})
		if err == nil {
			err = firstRedisError(replies)
		}
		if err != nil {
			return code2SessionResult{}, unavailable(err)
		}
		if replies[0] == "OK" {
			res, err := exchange(ctx)
			r.publish(ctx, key, res, err)
			return res, err
		}
		if v, _ := replies[1].(string); v != "" {
			if waited {
				return readExchangeAnswer(v)
			}
			// The exchange had finished before this login came: the code
			// goes to WeChat again, which refuses a spent one, as one
			// instance's flight.Group has it. An answer is only for those who
			// waited for it.
			return exchange(ctx)
		}
		waited = true
		// Under way elsewhere: look again shortly, until the answer is
		// there, or the mark is gone without one (that instance died) and
		// this one exchanges the code.
		t := time.NewTimer(r.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return code2SessionResult{}, fmt.Errorf("waiting for another instance's exchange of the code: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// publish leaves the answer for the instances waiting for it. If Redis
// cannot be told, they time out, or exchange the code themselves once the
// mark expires. The login's end does not cancel it (others wait for it),
// but its request's bound for Redis does (redis.WithBudgets): the store's
// calls for the same login come after it, within the same bound.
func (r *redisExchanges) publish(ctx context.Context, key string, res code2SessionResult, err error) {
	a := exchangeAnswer{OpenID: res.OpenID, SessionKey: res.SessionKey, UnionID: res.UnionID}
	var we *wechatError
	switch {
	case errors.As(err, &we):
		a = exchangeAnswer{Errcode: we.Code}
	case err != nil:
		a = exchangeAnswer{Failed: true}
	}
	v, _ := json.Marshal(a) // Cannot fail: plain data.
	r.rc.Do(context.WithoutCancel(ctx), "SET", key, string(v), "PX", strconv.FormatInt(exchangeAnswerKept.Milliseconds(), 10))
}

// readExchangeAnswer reads an answer another instance left.
func readExchangeAnswer(v string) (code2SessionResult, error) {
	var a exchangeAnswer
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		return code2SessionResult{}, unavailable(fmt.Errorf("an exchange's answer in Redis is not JSON: %w", err))
	}
	switch {
	case a.Errcode != 0:
		return code2SessionResult{}, &wechatError{API: "jscode2session", Code: a.Errcode, Msg: "(answered to another instance)"}
	case a.Failed || a.OpenID == "" || a.SessionKey == "":
		return code2SessionResult{}, errExchangeElsewhere
	}
	return code2SessionResult{OpenID: a.OpenID, SessionKey: a.SessionKey, UnionID: a.UnionID}, nil
}
