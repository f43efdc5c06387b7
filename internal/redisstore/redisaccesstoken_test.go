package redisstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"wxlogin/internal/testkit"
)

// Two instances on one Redis asking for an app's access_token at once
// make one fetch between them, and use the one token; once WeChat
// refused it, it is dropped, and the next ask fetches once again. A drop
// of a token already replaced drops nothing. (Through the WeChat client:
// the root's TestInstancesOnOneRedisFetchOneAccessToken.)
func TestInstancesOnOneRedisShareAnAccessToken(t *testing.T) {
	srv := testkit.StartRedis(t)
	instances := []*AccessTokens{
		NewAccessTokens(srv.Client(t, "", ""), time.Now, 5*time.Millisecond),
		NewAccessTokens(srv.Client(t, "", ""), time.Now, 5*time.Millisecond),
	}
	var fetches atomic.Int32
	fetch := func(context.Context) (string, time.Time, error) {
		n := fetches.Add(1)
		time.Sleep(100 * time.Millisecond) // WeChat's latency: every ask below starts within it
		return fmt.Sprint("token-", n), time.Now().Add(2 * time.Hour), nil
	}
	askAll := func() map[string]int {
		t.Helper()
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				token, until, err := instances[i%2].Get(t.Context(), "wxapp", fetch)
				if err != nil || !until.After(time.Now()) {
					t.Errorf("Get = %q until %v, %v; want a token to use", token, until, err)
				}
				mu.Lock()
				seen[token]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return seen
	}
	if seen := askAll(); fetches.Load() != 1 || len(seen) != 1 || seen["token-1"] != 40 {
		t.Fatalf("40 asks on two instances made %d fetches and got %v; want one fetch, token-1 for all", fetches.Load(), seen)
	}
	if err := instances[1].Drop(t.Context(), "wxapp", "token-1"); err != nil {
		t.Fatal(err)
	}
	if seen := askAll(); fetches.Load() != 2 || len(seen) != 1 || seen["token-2"] != 40 {
		t.Errorf("after token-1 was dropped, %d fetches in all and %v; want two, token-2 for all", fetches.Load(), seen)
	}
	if err := instances[0].Drop(t.Context(), "wxapp", "token-1"); err != nil {
		t.Fatal(err)
	}
	if token, _, err := instances[0].Get(t.Context(), "wxapp", fetch); err != nil || token != "token-2" || fetches.Load() != 2 {
		t.Errorf("after a drop of the replaced token-1, Get = %q, %v with %d fetches; want token-2, still two", token, err, fetches.Load())
	}
}
