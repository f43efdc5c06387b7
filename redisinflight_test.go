package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
	"wxlogin/internal/testkit"
)

// A code sent to two instances on one Redis at once, as a double tap whose
// logins a load balancer split, is exchanged once, and every login gets the
// answer: the user's, or WeChat's refusal. The answer does not outlive the
// moment: the same code later goes to WeChat, which refuses a spent code.
// (A login that comes after the exchange has finished does not get its
// answer: TestSecondLoginOfAUser, on both stores.)
func TestInstancesOnOneRedisExchangeACodeOnce(t *testing.T) {
	redisSrv := testkit.StartRedis(t)
	fake := newFakeWechat(map[string]fakeApp{"wxapp": {Name: "Test app", Secret: testSecret}}, time.Now)
	const path = "/mock/api/sns/jscode2session"
	routes := fake.routes()
	calls := &countingUpstream{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			time.Sleep(300 * time.Millisecond) // WeChat's latency: every login below starts within it
		}
		routes.ServeHTTP(w, r)
	})}
	srv := httptest.NewServer(calls)
	t.Cleanup(srv.Close)
	var clients []*wechatClient
	for range 2 {
		wx := newWechatClient(srv.URL+"/mock/api", "wxapp", testSecret, time.Second, 5*time.Second)
		wx.sharedExchanges = &redisExchanges{rc: redisSrv.Client(t, "", ""), poll: 5 * time.Millisecond, pending: 10 * time.Second}
		clients = append(clients, wx)
	}
	for round, code := range []string{fake.issueCode("wxapp", "alice"), "made-up-code"} {
		results := make([]code2SessionResult, 20)
		errs := make([]error, 20)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range results {
			wg.Go(func() {
				<-start // all at once, as a double tap's logins come
				results[i], errs[i] = clients[i%2].code2Session(t.Context(), code)
			})
		}
		close(start)
		wg.Wait()
		if n := calls.count(path); n != round+1 {
			t.Errorf("round %d: 20 logins with one code on two instances made %d calls in all; want %d", round, n, round+1)
		}
		for i := range results {
			var we *wechatError
			switch {
			case round == 0 && (errs[i] != nil || results[i] != results[0] || results[i].OpenID != fakeOpenID("wxapp", "alice")):
				t.Errorf("login %d got %+v, %v; want alice, as login 0 got", i, results[i], errs[i])
			case round == 1 && (!errors.As(errs[i], &we) || we.Code != errcodeInvalidCode):
				t.Errorf("login %d with a made-up code got %v; want WeChat's 40029", i, errs[i])
			}
		}
		ttl, err := redisSrv.Client(t, "", "").Do(t.Context(), "PTTL", redisExchangeKey("wxapp", code))
		if n, _ := ttl.(int64); err != nil || n <= 0 || n > exchangeAnswerKept.Milliseconds() {
			t.Errorf("round %d: the answer is kept %v ms (%v); want at most %v", round, ttl, err, exchangeAnswerKept)
		}
	}
}

// A login waiting for another instance's exchange of its code ends within
// the request's bound, even when that instance died with the code marked.
func TestWaitingForAnotherInstancesExchangeEndsInTime(t *testing.T) {
	srv := testkit.StartRedis(t)
	rc := srv.Client(t, "", "")
	wx := newWechatClient("http://127.0.0.1:1", "wxapp", testSecret, time.Second, 300*time.Millisecond)
	wx.sharedExchanges = &redisExchanges{rc: rc, poll: 5 * time.Millisecond, pending: 10 * time.Second}
	if _, err := rc.Do(t.Context(), "SET", redisExchangeKey("wxapp", "marked"), "", "PX", "10000"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := wx.code2Session(t.Context(), "marked")
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Errorf("a code marked by a dead instance = %v after %v; want the deadline, within the 300 ms bound", err, took)
	}
}
