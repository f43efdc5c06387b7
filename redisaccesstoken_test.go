package main

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
	"wxlogin/internal/testkit"
)

// Two instances on one Redis fetch one access_token between them, however
// many requests need it at once; when WeChat refuses it, one fetch replaces
// it for both.
func TestInstancesOnOneRedisFetchOneAccessToken(t *testing.T) {
	redisSrv := testkit.StartRedis(t)
	clock := newFakeClock() // the fake's: wxlogin's clients run on the real one
	fake := newFakeWechat(map[string]fakeApp{"wxapp": {Name: "Test app", Secret: testSecret}}, clock.Now)
	calls := &countingUpstream{next: fake.routes()}
	srv := httptest.NewServer(calls)
	t.Cleanup(srv.Close)
	var clients []*wechatClient
	for range 2 { // two instances: each its own client, its own pool, one Redis
		rc := redisSrv.Client(t, "", "")
		wx := newWechatClient(srv.URL+"/mock/api", "wxapp", testSecret, time.Second, 5*time.Second)
		wx.sharedTokens = &redisAccessTokens{rc: rc, now: time.Now, poll: 10 * time.Millisecond}
		clients = append(clients, wx)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	use := func(wx *wechatClient, refuse string) {
		err := wx.withAccessToken(t.Context(), func(ctx context.Context, token string) error {
			mu.Lock()
			seen[token]++
			mu.Unlock()
			if token == refuse {
				return &wechatError{API: "test", Code: errcodeInvalidToken}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() { use(clients[i%2], "") })
	}
	wg.Wait()
	if n := calls.count(stableTokenPath); n != 1 {
		t.Errorf("40 requests on two instances made %d stable_token calls; want 1", n)
	}
	if len(seen) != 1 {
		t.Fatalf("the instances used %d tokens; want one", len(seen))
	}
	var first string
	for token := range seen {
		first = token
	}

	// WeChat refuses the token (say, the AppSecret was reset): each
	// instance drops it and fetches, but the two fetches are one. (The
	// fake's clock moves on, so that it hands out another token.)
	clock.Advance(3 * time.Hour)
	for i := range 10 {
		wg.Go(func() { use(clients[i%2], first) })
	}
	wg.Wait()
	if n := calls.count(stableTokenPath); n != 2 {
		t.Errorf("after the token was refused, %d stable_token calls in all; want 2", n)
	}
}
