package redis_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"wxlogin/internal/redis"
	"wxlogin/internal/testkit"
)

func TestClientCommands(t *testing.T) {
	s := testkit.StartRedis(t)
	c := s.Client(t, "", "")
	ctx := t.Context()
	if v, err := c.Do(ctx, "SET", "greeting", "你好\r\nworld"); err != nil || v != "OK" {
		t.Fatalf("SET = %v, %v", v, err)
	}
	if v, err := c.Do(ctx, "GET", "greeting"); err != nil || v != "你好\r\nworld" {
		t.Errorf("GET = %q, %v", v, err)
	}
	if v, err := c.Do(ctx, "GET", "missing"); err != nil || v != nil {
		t.Errorf("GET of a missing key = %#v, %v; want nil", v, err)
	}
	var refused redis.Error
	if _, err := c.Do(ctx, "INCR", "greeting"); !errors.As(err, &refused) || !strings.HasPrefix(string(refused), "ERR") {
		t.Errorf("INCR of a string = %v; want Redis's ERR", err)
	}
	replies, err := c.Pipeline(ctx, [][]string{{"INCR", "n"}, {"INCRBY", "n", "41"}, {"HSET", "n", "f", "v"}, {"GET", "n"}})
	if err != nil || len(replies) != 4 || replies[1] != int64(42) || replies[3] != "42" {
		t.Fatalf("pipeline = %#v, %v", replies, err)
	}
	if _, refused := replies[2].(redis.Error); !refused {
		t.Errorf("HSET of a string in a pipeline = %#v; want a refusal among the replies", replies[2])
	}

	// A script, sent whole after the server forgot it (a restart, a failover).
	script := redis.NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	for i, flush := range []bool{false, true, false} {
		if flush {
			if _, err := c.Do(ctx, "SCRIPT", "FLUSH"); err != nil {
				t.Fatal(err)
			}
		}
		if v, err := script.Run(ctx, c, []string{"counter"}, "10"); err != nil || v != int64(10*(i+1)) {
			t.Errorf("script run %d = %v, %v; want %d", i+1, v, err, 10*(i+1))
		}
	}
}

// AUTH with the default user's password or an ACL user, SELECT of a
// database; a wrong password is refused without being repeated.
func TestClientAuthAndSelect(t *testing.T) {
	s := testkit.StartRedis(t, "--requirepass", "default-secret")
	ctx := t.Context()
	if _, err := s.Client(t, "", "").Do(ctx, "PING"); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without a password = %v; want NOAUTH", err)
	}
	admin := s.Client(t, ":default-secret@", "")
	if _, err := admin.Do(ctx, "ACL", "SETUSER", "wxlogin", "on", ">user-secret", "~*", "+@all"); err != nil {
		t.Fatal(err)
	}
	for _, userinfo := range []string{"wxlogin:wrong@", ":wrong@"} {
		_, err := s.Client(t, userinfo, "").Do(ctx, "PING")
		if err == nil || !strings.Contains(err.Error(), "WRONGPASS") || strings.Contains(err.Error(), "wrong@") {
			t.Errorf("PING as %q = %v; want WRONGPASS, without the password", userinfo, err)
		}
	}
	user := s.Client(t, "wxlogin:user-secret@", "/3")
	if v, err := user.Do(ctx, "ACL", "WHOAMI"); err != nil || v != "wxlogin" {
		t.Errorf("ACL WHOAMI = %v, %v; want wxlogin", v, err)
	}
	if _, err := user.Do(ctx, "SET", "k", "in db 3"); err != nil {
		t.Fatal(err)
	}
	if v, _ := admin.Do(ctx, "GET", "k"); v != nil {
		t.Errorf("GET k in db 0 = %v; want nothing: it was set in db 3", v)
	}
	if v, _ := user.Do(ctx, "GET", "k"); v != "in db 3" {
		t.Errorf("GET k in db 3 = %v", v)
	}
}

// A call ends with its context, even while Redis holds it (a blocking
// command, a stalled server); the connection is not reused, and the pool
// bounds the connections, so a caller beyond it waits within its context.
func TestClientDeadlinesAndPoolBound(t *testing.T) {
	s := testkit.StartRedis(t)
	c := s.Client(t, "", "?pool=2")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Do(ctx, "BLPOP", "never", "0"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("BLPOP past the deadline = %v; want the deadline", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("BLPOP with a 100 ms deadline returned after %v", took)
	}
	if v, err := c.Do(t.Context(), "PING"); err != nil || v != "PONG" {
		t.Errorf("PING after a timed-out call = %v, %v; want a fresh connection", v, err)
	}

	// Both connections held by blocking calls: a third caller waits for
	// room, and gives up with its context.
	held, release := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	started := make(chan struct{}, 2)
	for range 2 {
		wg.Go(func() {
			started <- struct{}{}
			c.Do(held, "BLPOP", "never", "0")
		})
	}
	<-started
	<-started
	testkit.WaitFor(t, "both connections taken", func() bool { return c.FreeConns() == 0 })
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	if _, err := c.Do(short, "PING"); err == nil || !strings.Contains(err.Error(), "waiting for a connection") {
		t.Errorf("a third call with the pool full = %v; want it to wait and give up", err)
	}
	release()
	wg.Wait()
	if v, err := c.Do(t.Context(), "PING"); err != nil || v != "PONG" {
		t.Errorf("PING once the pool has room = %v, %v", v, err)
	}
}

// A request's calls share one bound (redis.WithBudgets): a call that Redis
// holds ends when the request has waited the bound in all, and the calls
// after it fail at once, unsent, with the bound spent; a call with a
// context no budget came with is bounded by the timeout alone.
func TestCallsOfARequestShareOneBound(t *testing.T) {
	s := testkit.StartRedis(t)
	c := s.Client(t, "", "?timeout=5s")
	const bound = 200 * time.Millisecond
	var errs []error
	var sent []int64
	redis.WithBudgets(bound, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, cmd := range [][]string{{"PING"}, {"BLPOP", "never", "0"}, {"PING"}, {"BLPOP", "never", "0"}} {
			before := c.RoundTrips()
			_, err := c.Do(r.Context(), cmd...)
			errs, sent = append(errs, err), append(sent, c.RoundTrips()-before)
		}
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if errs[0] != nil || !errors.Is(errs[1], context.DeadlineExceeded) {
		t.Errorf("PING, then a call Redis holds = %v, %v; want the second to end with the bound", errs[0], errs[1])
	}
	for i := 2; i < 4; i++ {
		if !errors.Is(errs[i], redis.ErrBudgetSpent) || sent[i] != 0 {
			t.Errorf("call %d after the bound was spent = %v, %d round trips; want ErrBudgetSpent, unsent", i+1, errs[i], sent[i])
		}
	}
	if _, err := c.Do(t.Context(), "PING"); err != nil {
		t.Errorf("PING with no budget = %v", err)
	}
}

// Calls made while every connection is busy go together in one pipeline,
// and each gets its own replies, in its own order.
func TestClientCarriesConcurrentCallsTogether(t *testing.T) {
	s := testkit.StartRedis(t)
	c := s.Client(t, "", "?pool=2")
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			key := "k" + strconv.Itoa(g)
			for i := range 30 {
				v := strconv.Itoa(g*1000 + i)
				replies, err := c.Pipeline(t.Context(), [][]string{{"SET", key, v}, {"GET", key}, {"ECHO", key}})
				if err != nil || len(replies) != 3 || replies[0] != "OK" || replies[1] != v || replies[2] != key {
					t.Errorf("SET, GET, ECHO of %s = %v, %v; want OK, %s, %s", key, replies, err, v, key)
					return
				}
				if got, err := c.Do(t.Context(), "INCR", key+":n"); err != nil || got != int64(i+1) {
					t.Errorf("INCR %s:n = %v, %v; want %d", key, got, err, i+1)
					return
				}
			}
		})
	}
	wg.Wait()
	calls, writes := c.RoundTrips(), c.Writes()
	if calls != 64*30*2 || writes >= calls {
		t.Errorf("%d calls in %d writes; want 3840 calls in fewer writes", calls, writes)
	}
	t.Logf("%d calls in %d writes", calls, writes)
}

// A call queued behind a connection that a hung Redis holds gives up at
// the pool's timeout, though its context has no deadline: waiting still,
// or sent at last on a new connection once the timeout freed the first.
// (The server accepts connections and never answers.)
func TestClientQueuedCallsKeepTheTimeout(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			conn, err := hung.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	cfg, err := redis.ParseURL("redis://" + hung.Addr().String() + "?pool=1&timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(cfg)
	defer c.Close()
	go c.Do(context.Background(), "GET", "k")
	testkit.WaitFor(t, "the connection taken", func() bool { return c.FreeConns() == 0 })
	start := time.Now()
	queued := make(chan error, 1)
	go func() {
		_, err := c.Do(context.Background(), "PING")
		queued <- err
	}()
	select {
	case err := <-queued:
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("PING queued behind a hung Redis = %v; want it to give up at the timeout", err)
		}
		// Bounded by its own timeout, not by the first call's and then its
		// own (2 s).
		if took := time.Since(start); took > 1600*time.Millisecond {
			t.Errorf("the queued PING returned after %v; the timeout is 1 s", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued PING was still waiting after 10 s; the timeout is 1 s")
	}
}

// A server that is not there fails at once with ErrDial, naming the
// address, and the pool is whole afterwards.
func TestClientServerDown(t *testing.T) {
	port := testkit.FreeRedisPort(t)
	cfg, _ := redis.ParseURL("redis://127.0.0.1:" + strconv.Itoa(port) + "?pool=1&timeout=500ms")
	c := redis.NewClient(cfg)
	defer c.Close()
	for range 3 { // the one slot of the pool is given back each time
		_, err := c.Do(t.Context(), "PING")
		if !errors.Is(err, redis.ErrDial) || !strings.Contains(err.Error(), strconv.Itoa(port)) {
			t.Fatalf("PING of no server = %v; want ErrDial naming the address", err)
		}
	}
}

// BenchmarkPing is one round trip to a local redis-server, from
// concurrent callers: what each round trip of a route costs wxlogin
// (BENCHMARKS.md, Redis). Its CPU profile is mostly the kernel's write and
// read.
func BenchmarkPing(b *testing.B) { benchmarkPing(b, 1) }

// BenchmarkPingCrowded is BenchmarkPing from 64 callers at once,
// as a loaded wxlogin makes them: with every connection busy, calls queue
// and go together, so writes/op falls below one.
func BenchmarkPingCrowded(b *testing.B) { benchmarkPing(b, 32) }

// benchmarkPing sends PINGs from parallelism callers per CPU.
func benchmarkPing(b *testing.B, parallelism int) {
	s := testkit.StartRedis(b)
	cfg, err := redis.ParseURL("redis://" + s.Addr)
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(cfg)
	defer c.Close()
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Do(b.Context(), "PING"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(c.Writes())/float64(b.N), "writes/op")
}

// PipelineEach sends the commands of many slots together, a refusal
// among the replies, on one server and on a cluster.
func TestPipelineEach(t *testing.T) {
	single := testkit.StartRedis(t)
	cl := testkit.StartRedisCluster(t, 3)
	for _, tt := range []struct {
		name string
		c    *redis.Client
	}{{"redis", single.Client(t, "", "")}, {"redis-cluster", cl.Client(t)}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			var groups [][][]string
			for i := range 20 {
				key := "{" + strconv.Itoa(i) + "}"
				groups = append(groups, [][]string{{"SET", key + "a", "x"}, {"INCRBY", key + "b", strconv.Itoa(i)}, {"INCR", key + "a"}})
			}
			replies, err := tt.c.PipelineEach(ctx, groups)
			if err != nil || len(replies) != 20 {
				t.Fatalf("PipelineEach = %d groups of replies, %v; want 20", len(replies), err)
			}
			for i, r := range replies {
				if len(r) != 3 || r[0] != "OK" || r[1] != int64(i) {
					t.Errorf("group %d's replies = %#v; want OK, %d and a refusal", i, r, i)
					continue
				}
				if _, refused := r[2].(redis.Error); !refused {
					t.Errorf("INCR of a string = %#v; want a refusal among the replies", r[2])
				}
			}
		})
	}
}

// A script run for each of several calls (RunEach) answers each call's
// reply in order, a refusal among them, on one server and across a
// cluster's masters, and sends itself whole to a server that forgot it.
func TestScriptRunEach(t *testing.T) {
	single := testkit.StartRedis(t)
	cl := testkit.StartRedisCluster(t, 3)
	script := redis.NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	for _, tt := range []struct {
		name  string
		c     *redis.Client
		flush func(ctx context.Context) error
	}{
		{"redis", single.Client(t, "", ""), func(ctx context.Context) error {
			_, err := single.Client(t, "", "").Do(ctx, "SCRIPT", "FLUSH")
			return err
		}},
		{"redis-cluster", cl.Client(t), func(ctx context.Context) error {
			_, err := cl.Client(t).OnEachServer(ctx, [][]string{{"SCRIPT", "FLUSH"}})
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if _, err := tt.c.Do(ctx, "SET", "{9}a", "x"); err != nil {
				t.Fatal(err)
			}
			for round, flush := range []bool{false, true, false} {
				if flush {
					if err := tt.flush(ctx); err != nil {
						t.Fatal(err)
					}
				}
				var calls [][]string
				for i := range 10 { // the last, {9}a, a string
					calls = append(calls, []string{"{" + strconv.Itoa(i) + "}a", strconv.Itoa(i)})
				}
				replies, err := script.RunEach(ctx, tt.c, 1, calls)
				if err != nil || len(replies) != len(calls) {
					t.Fatalf("round %d: RunEach = %d replies, %v; want %d", round, len(replies), err, len(calls))
				}
				for i, r := range replies[:9] {
					if r != int64(i*(round+1)) {
						t.Errorf("round %d: call %d's reply = %#v; want %d", round, i, r, i*(round+1))
					}
				}
				if _, refused := replies[9].(redis.Error); !refused {
					t.Errorf("round %d: INCRBY of a string = %#v; want a refusal among the replies", round, replies[9])
				}
			}
		})
	}
}

// A command sent for later (Send) goes with the next call to its server,
// in the same write, its reply dropped, a refusal too; with no call after
// it, it goes on its own shortly, a write that is no caller's round trip;
// on a cluster, to its key's master.
func TestSendGoesWithTheNextCall(t *testing.T) {
	redis.SendLaterWithin(t, time.Hour)
	s := testkit.StartRedis(t)
	c := s.Client(t, "", "")
	ctx := t.Context()
	if _, err := c.Do(ctx, "PING"); err != nil {
		t.Fatal(err)
	}
	calls, writes := c.RoundTrips(), c.Writes()
	c.Send("SET", "answer", "42", "PX", "60000")
	c.Send("HSET", "answer", "f", "v") // refused: a string
	if v, err := c.Do(ctx, "GET", "answer"); err != nil || v != "42" {
		t.Errorf("GET after a SET sent for later = %#v, %v; want 42", v, err)
	}
	if n, w := c.RoundTrips()-calls, c.Writes()-writes; n != 1 || w != 1 {
		t.Errorf("a call after two commands sent for later: %d round trips in %d writes; want 1 in 1", n, w)
	}

	redis.SendLaterWithin(t, time.Millisecond)
	calls, writes = c.RoundTrips(), c.Writes()
	c.Send("SET", "alone", "yes")
	other := s.Client(t, "", "")
	waitFor(t, other, "alone", "yes")
	if n, w := c.RoundTrips()-calls, c.Writes()-writes; n != 0 || w != 1 {
		t.Errorf("a command sent for later with no call after it: %d round trips in %d writes; want 0 in 1", n, w)
	}

	cl := testkit.StartRedisCluster(t, 3)
	cc := cl.Client(t)
	if _, err := cc.Do(ctx, "SET", "{k}known", "1"); err != nil {
		t.Fatal(err)
	}
	cc.Send("SET", "{k}later", "2")     // a slot the map knows
	cc.Send("SET", "{other}later", "3") // perhaps not yet
	waitFor(t, cc, "{k}later", "2")
	waitFor(t, cc, "{other}later", "3")
}

// waitFor polls key with c until it holds want.
func waitFor(t *testing.T, c *redis.Client, key, want string) {
	t.Helper()
	testkit.WaitWithin(t, 10*time.Second, key+" holding "+want, func() bool {
		v, err := c.Do(t.Context(), "GET", key)
		if err != nil {
			t.Fatal(err)
		}
		return v == want
	})
}
