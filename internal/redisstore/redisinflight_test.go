package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"wxlogin/internal/testkit"
)

// testRefusal is WeChat's refusal of a code as the WeChat client reports
// it: an error with an Errcode method.
type testRefusal int

func (e testRefusal) Error() string { return "wechat jscode2session: refused" }
func (e testRefusal) Errcode() int  { return int(e) }

// Callers of two instances on one Redis exchanging one code at once make
// one exchange, and every one gets its answer: the session, or WeChat's
// refusal by its errcode (a *Refused for those who waited). The answer is
// kept for the waiting only, exchangeAnswerKept at most. (Through the
// WeChat client, and with the answer that does not outlive the moment:
// the root's TestInstancesOnOneRedisExchangeACodeOnce.)
func TestInstancesOnOneRedisShareAnExchangesAnswer(t *testing.T) {
	srv := testkit.StartRedis(t)
	instances := []*Exchanges{
		NewExchanges(srv.Client(t, "", ""), 5*time.Millisecond, 10*time.Second),
		NewExchanges(srv.Client(t, "", ""), 5*time.Millisecond, 10*time.Second),
	}
	admin := srv.Client(t, "", "")
	alice := Session{OpenID: "o-alice", SessionKey: "key-alice", UnionID: "u-alice"}
	for round, tt := range []struct {
		code    string
		errcode int // WeChat's refusal, or 0
	}{{"alice's code", 0}, {"made-up-code", 40029}} {
		var calls atomic.Int32
		exchange := func(context.Context) (Session, error) {
			calls.Add(1)
			time.Sleep(300 * time.Millisecond) // WeChat's latency: every caller below starts within it
			if tt.errcode != 0 {
				return Session{}, testRefusal(tt.errcode)
			}
			return alice, nil
		}
		results := make([]Session, 20)
		errs := make([]error, 20)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range results {
			wg.Go(func() {
				<-start // all at once, as a double tap's logins come
				results[i], errs[i] = instances[i%2].Exchange(t.Context(), "wxapp", tt.code, exchange)
			})
		}
		close(start)
		wg.Wait()
		if n := calls.Load(); n != 1 {
			t.Errorf("round %d: 20 callers with one code on two instances made %d exchanges; want 1", round, n)
		}
		for i := range results {
			var refused *Refused
			var own testRefusal
			switch {
			case tt.errcode == 0 && (errs[i] != nil || results[i] != alice):
				t.Errorf("round %d: caller %d got %+v, %v; want alice's session", round, i, results[i], errs[i])
			case tt.errcode != 0 && !(errors.As(errs[i], &refused) && refused.Code == tt.errcode) && !(errors.As(errs[i], &own) && int(own) == tt.errcode):
				t.Errorf("round %d: caller %d got %v; want WeChat's %d", round, i, errs[i], tt.errcode)
			}
		}
		ttl, err := admin.Do(t.Context(), "PTTL", exchangeKey("wxapp", tt.code))
		if n, _ := ttl.(int64); err != nil || n <= 0 || n > exchangeAnswerKept.Milliseconds() {
			t.Errorf("round %d: the answer is kept %v ms (%v); want at most %v", round, ttl, err, exchangeAnswerKept)
		}
	}
}

// A caller waiting for another instance's exchange of its code ends
// within its context's bound, even when that instance died with the code
// marked, and never exchanges the code itself meanwhile.
func TestAMarkOfADeadInstanceIsWaitedForInTime(t *testing.T) {
	srv := testkit.StartRedis(t)
	rc := srv.Client(t, "", "")
	x := NewExchanges(rc, 5*time.Millisecond, 10*time.Second)
	if _, err := rc.Do(t.Context(), "SET", exchangeKey("wxapp", "marked"), "", "PX", "10000"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := x.Exchange(ctx, "wxapp", "marked", func(context.Context) (Session, error) {
		t.Error("the code another instance marked was exchanged again")
		return Session{}, nil
	})
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Errorf("a code marked by a dead instance = %v after %v; want the deadline, within the 300 ms bound", err, took)
	}
}
