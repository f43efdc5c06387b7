package redisstore

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
// instance do (flight.Group). The first instance to see a code marks it
// at wx:{x:<appid>:<hash of the code>} (SET NX, expiring after the
// exchange's bound) and exchanges it; the others watch that key until the
// answer is there. The answer is only for the logins that waited for it,
// and stays for exchangeAnswerKept, long enough for their next look: a
// code sent again once its exchange has finished goes to WeChat, which
// refuses a spent code, as on one instance. The key holds a hash of the
// code, never the code.

// Session is WeChat's answer to a code (auth.code2Session, WECHAT.md §1),
// as the instances share it.
type Session struct {
	OpenID     string
	SessionKey string
	UnionID    string // empty unless the app is bound to an Open Platform account
}

// refusal is the error of WeChat's refusal of a code, as the WeChat client
// returns it from an exchange: its errcode is what the instances that
// waited for the exchange are told (Refused).
type refusal interface {
	error
	Errcode() int
}

// Refused is WeChat's refusal of a code another instance exchanged, with
// the errcode that instance was told.
type Refused struct{ Code int }

func (e *Refused) Error() string {
	return fmt.Sprintf("wechat jscode2session: errcode %d: (answered to another instance)", e.Code)
}

// exchangeAnswerKept is how long an answer waits for the instances that
// were waiting for it: several of their looks.
const exchangeAnswerKept = 2 * time.Second

// Exchanges are the code exchanges under way, shared in Redis by the
// instances on it.
type Exchanges struct {
	rc      *redis.Client
	poll    time.Duration // how often a waiting instance looks
	pending time.Duration // how long a mark lasts: the bound of one exchange
}

// NewExchanges shares the exchanges on rc. An instance waiting for
// another's exchange looks again every poll; a mark whose instance died
// lasts pending, the bound of one exchange.
func NewExchanges(rc *redis.Client, poll, pending time.Duration) *Exchanges {
	return &Exchanges{rc: rc, poll: poll, pending: pending}
}

// exchangeAnswer is an exchange's answer as the key holds it.
type exchangeAnswer struct {
	OpenID     string `json:"openid,omitempty"`
	SessionKey string `json:"session_key,omitempty"`
	UnionID    string `json:"unionid,omitempty"`
	Errcode    int    `json:"errcode,omitempty"` // WeChat refused: its errcode
	Failed     bool   `json:"failed,omitempty"`  // it failed otherwise (WeChat down, time up)
}

// errExchangedElsewhere is the failure of an exchange another instance made,
// other than WeChat's refusal: its cause is in that instance's log.
var errExchangedElsewhere = errors.New("wechat jscode2session: the exchange of this code failed on another instance")

func exchangeKey(appID, code string) string {
	sum := sha256.Sum256([]byte(code))
	return "wx:{x:" + appID + ":" + hex.EncodeToString(sum[:16]) + "}"
}

// Exchange returns the answer to code: of the exchange another instance
// has under way, or of exchange, made here. A refusal of WeChat's, an
// error with an Errcode method, is shared as its errcode, and comes back
// to the instances that waited for it as a *Refused.
func (r *Exchanges) Exchange(ctx context.Context, appID, code string, exchange func(ctx context.Context) (Session, error)) (Session, error) {
	key := exchangeKey(appID, code)
	waited := false // whether this login saw the exchange under way
	for {
		replies, err := r.rc.Pipeline(ctx, [][]string{
			{"SET", key, "", "NX", "PX", strconv.FormatInt(r.pending.Milliseconds(), 10)}, {"GET", key}})
		if err == nil {
			err = firstError(replies)
		}
		if err != nil {
			return Session{}, unavailable(err)
		}
		if replies[0] == "OK" {
			res, err := exchange(ctx)
			r.publish(key, res, err)
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
			return Session{}, fmt.Errorf("waiting for another instance's exchange of the code: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// publish leaves the answer for the instances waiting for it: sent with
// the login's next call to Redis (redis.Client.Send), which is on the
// same server unless a cluster puts the two keys apart, so that it costs
// no round trip of its own. If Redis cannot be told, the instances waiting
// time out, or exchange the code themselves once the mark expires.
func (r *Exchanges) publish(key string, res Session, err error) {
	a := exchangeAnswer{OpenID: res.OpenID, SessionKey: res.SessionKey, UnionID: res.UnionID}
	var refused refusal
	switch {
	case errors.As(err, &refused):
		a = exchangeAnswer{Errcode: refused.Errcode()}
	case err != nil:
		a = exchangeAnswer{Failed: true}
	}
	v, _ := json.Marshal(a) // Cannot fail: plain data.
	r.rc.Send("SET", key, string(v), "PX", strconv.FormatInt(exchangeAnswerKept.Milliseconds(), 10))
}

// readExchangeAnswer reads an answer another instance left.
func readExchangeAnswer(v string) (Session, error) {
	var a exchangeAnswer
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		return Session{}, unavailable(fmt.Errorf("an exchange's answer in Redis is not JSON: %w", err))
	}
	switch {
	case a.Errcode != 0:
		return Session{}, &Refused{Code: a.Errcode}
	case a.Failed || a.OpenID == "" || a.SessionKey == "":
		return Session{}, errExchangedElsewhere
	}
	return Session{OpenID: a.OpenID, SessionKey: a.SessionKey, UnionID: a.UnionID}, nil
}
