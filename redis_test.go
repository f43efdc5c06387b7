package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAppendRedisCommand(t *testing.T) {
	got := string(appendRedisCommand(nil, []string{"SET", "k", "a\r\nb", ""}))
	want := "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n$0\r\n\r\n"
	if got != want {
		t.Errorf("appendRedisCommand = %q; want %q", got, want)
	}
}

func TestReadRedisReply(t *testing.T) {
	tests := []struct {
		name, in string
		want     any
		bad      bool // an error of the connection
	}{
		{"simple string", "+OK\r\n", "OK", false},
		{"error", "-ERR wrong\r\n", redisError("ERR wrong"), false},
		{"integer", ":-42\r\n", int64(-42), false},
		{"bulk", "$5\r\nhe\r\no\r\n", "he\r\no", false},
		{"empty bulk", "$0\r\n\r\n", "", false},
		{"nil bulk", "$-1\r\n", nil, false},
		{"nil array", "*-1\r\n", nil, false},
		{"array", "*3\r\n:1\r\n$1\r\na\r\n*1\r\n+x\r\n", []any{int64(1), "a", []any{"x"}}, false},
		{"empty", "", nil, true},
		{"no CRLF", "+OK\n", nil, true},
		{"bad integer", ":1x\r\n", nil, true},
		{"bad length", "$x\r\n", nil, true},
		{"length below -1", "$-2\r\n", nil, true},
		{"bulk over the limit", "$" + strconv.Itoa(maxRedisBulk+1) + "\r\n", nil, true},
		{"array over the limit", "*" + strconv.Itoa(maxRedisArray+1) + "\r\n", nil, true},
		{"bulk cut short", "$5\r\nab", nil, true},
		{"bulk not ended by CRLF", "$2\r\nabcd", nil, true},
		{"array cut short", "*2\r\n:1\r\n", nil, true},
		{"too deep", strings.Repeat("*1\r\n", maxRedisDepth+1) + ":1\r\n", nil, true},
		{"unknown type", "%1\r\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readRedisReply(bufio.NewReader(strings.NewReader(tt.in)))
			if tt.bad {
				if err == nil {
					t.Errorf("readRedisReply(%q) = %#v; want an error", tt.in, got)
				}
				return
			}
			if err != nil || fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tt.want) {
				t.Errorf("readRedisReply(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzReadRedisReply checks that no reply from a server panics the parser
// or makes it allocate past its limits, and that replies read back as
// written.
func FuzzReadRedisReply(f *testing.F) {
	for _, seed := range []string{"+OK\r\n", "-MOVED 3999 127.0.0.1:6381\r\n", ":1\r\n", "$3\r\nabc\r\n", "*2\r\n*3\r\n:0\r\n:5460\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n$-1\r\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		v, err := readRedisReply(r)
		if err != nil {
			return
		}
		if s, ok := v.(string); ok && len(s) > len(in) {
			t.Fatalf("readRedisReply(%q) made a string of %d bytes", in, len(s))
		}
	})
}

func TestParseRedisURL(t *testing.T) {
	tests := []struct {
		name, url string
		want      redisConfig // the fields compared: addrs, user, password, db, cluster, poolSize, tls
		wantTLS   bool
		err       string // a part of the error wanted
	}{
		{"host only", "redis://localhost", redisConfig{addrs: []string{"localhost:6379"}, poolSize: 8}, false, ""},
		{"everything", "rediss://wxlogin:s3cret@redis.example:6380/2?pool=3&timeout=1s",
			redisConfig{addrs: []string{"redis.example:6380"}, user: "wxlogin", password: "s3cret", db: 2, poolSize: 3}, true, ""},
		{"password only", "redis://:s3cret@127.0.0.1:7000", redisConfig{addrs: []string{"127.0.0.1:7000"}, password: "s3cret", poolSize: 8}, false, ""},
		{"cluster seeds", "redis://127.0.0.1:7000?cluster=true&addr=127.0.0.1:7001&addr=[::1]",
			redisConfig{addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001", "[::1]:6379"}, cluster: true, poolSize: 8}, false, ""},
		{"other scheme", "http://:s3cret@127.0.0.1", redisConfig{}, false, "redis:// or rediss://"},
		{"no host", "redis://", redisConfig{}, false, "no host"},
		{"bad db", "redis://:s3cret@127.0.0.1/x", redisConfig{}, false, "database number"},
		{"cluster with a db", "redis://127.0.0.1/1?cluster=1", redisConfig{}, false, "database 0 only"},
		{"bad pool", "redis://:s3cret@127.0.0.1?pool=0", redisConfig{}, false, "pool="},
		{"bad timeout", "redis://127.0.0.1?timeout=soon", redisConfig{}, false, "timeout="},
		{"not a URL", "redis://:s3cret@[::1", redisConfig{}, false, "not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRedisURL(tt.url)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseRedisURL(%q) = %v; want an error saying %q", tt.url, err, tt.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRedisURL(%q) = %v", tt.url, err)
			}
			if fmt.Sprint(got.addrs) != fmt.Sprint(tt.want.addrs) || got.user != tt.want.user || got.password != tt.want.password ||
				got.db != tt.want.db || got.cluster != tt.want.cluster || got.poolSize != tt.want.poolSize || (got.tls != nil) != tt.wantTLS {
				t.Errorf("parseRedisURL(%q) = %+v; want %+v, TLS %v", tt.url, got, tt.want, tt.wantTLS)
			}
		})
	}
}

// The cluster spec's vectors: CRC16 of "123456789" is 0x31C3; keys with
// the same hash tag share a slot; an empty {} is no tag.
func TestRedisSlot(t *testing.T) {
	if got := crc16("123456789"); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#x; want 0x31c3", got)
	}
	tests := []struct{ key, sameAs string }{
		{"{user1000}.following", "{user1000}.followers"},
		{"{user1000}.following", "user1000"},
		{"foo{}{bar}", "foo{}{bar}"},
		{"foo{{bar}}zap", "{bar"},
		{"foo{bar}{zap}", "bar"},
	}
	for _, tt := range tests {
		if redisSlot(tt.key) != redisSlot(tt.sameAs) {
			t.Errorf("redisSlot(%q) = %d, redisSlot(%q) = %d; want the same", tt.key, redisSlot(tt.key), tt.sameAs, redisSlot(tt.sameAs))
		}
	}
	if got := redisSlot("foo"); got != 12182 {
		t.Errorf("redisSlot(foo) = %d; want 12182 (CLUSTER KEYSLOT foo)", got)
	}
	if redisSlot("foo{}{bar}") == redisSlot("bar") {
		t.Error("an empty {} was taken for a hash tag")
	}
}

func TestRedisCommandKey(t *testing.T) {
	tests := []struct {
		cmd  []string
		want string
	}{
		{[]string{"GET", "k"}, "k"},
		{[]string{"evalsha", "abc", "2", "k1", "k2", "a"}, "k1"},
		{[]string{"EVAL", "return 1", "0"}, ""},
		{[]string{"PING"}, ""},
		{[]string{"CONFIG", "GET", "appendonly"}, ""},
	}
	for _, tt := range tests {
		if got := redisCommandKey(tt.cmd); got != tt.want {
			t.Errorf("redisCommandKey(%q) = %q; want %q", tt.cmd, got, tt.want)
		}
	}
}

// requireRedis skips the test when redis-server is not installed, unless
// WXLOGIN_REQUIRE_REDIS is set, as .ci/run sets it after installing it.
func requireRedis(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("WXLOGIN_REQUIRE_REDIS") != "" {
			t.Fatal("redis-server is not installed, and WXLOGIN_REQUIRE_REDIS says it must be")
		}
		skipMissingTool(t, "redis-server is not installed (.ci/run installs Debian's redis-server; apt-get install redis-server)")
	}
	return path
}

// redisServer is a redis-server a test started.
type redisServer struct {
	addr string
	dir  string
	log  *syncBuffer
	argv []string // how it was started, to start it again
	cmd  *exec.Cmd
	// exited is closed when the process started last has exited.
	exited <-chan struct{}
}

// freeRedisPort is a loopback port free now, with the port 10000 above it
// (a cluster node's bus) free too.
func freeRedisPort(t testing.TB) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err == nil {
			bus.Close()
			return port
		}
	}
	t.Fatal("no free pair of loopback ports")
	return 0
}

// startRedis runs redis-server on a free loopback port, with no
// persistence unless args ask for it, and stops it when the test ends. A
// port taken between its choice and the server's bind (by another test
// run on the machine) is given up for another.
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	bin := requireRedis(t)
	for attempt := 1; ; attempt++ {
		port := freeRedisPort(t)
		s := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), dir: t.TempDir(), log: &syncBuffer{}}
		base := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", s.dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no", "--logfile", ""}
		s.argv = append([]string{bin}, append(base, args...)...)
		err := s.run(t)
		if err == nil {
			t.Cleanup(s.kill)
			return s
		}
		if attempt == 5 || !strings.Contains(s.log.String(), "Address already in use") {
			t.Fatalf("redis-server on %s: %v:\n%s", s.addr, err, s.log)
		}
	}
}

// start runs the server again, on its port, and waits until it answers.
func (s *redisServer) start(t testing.TB) {
	t.Helper()
	if err := s.run(t); err != nil {
		t.Fatalf("redis-server on %s: %v:\n%s", s.addr, err, s.log)
	}
}

// run runs the server and waits until it answers, or says why it does not.
func (s *redisServer) run(t testing.TB) error {
	t.Helper()
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		close(exited)
	}(s.cmd)
	return s.waitReady()
}

// kill ends the server with SIGKILL, as a crash would, and waits for it.
func (s *redisServer) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// waitReady polls the server with PING until it answers, for 10 s at most,
// or until it exits.
func (s *redisServer) waitReady() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.exited:
			return errors.New("it exited")
		default:
		}
		conn, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(time.Second))
			conn.Write([]byte("PING\r\n"))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			// +PONG, or -NOAUTH from a server with a password: up either way.
			if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("not ready after 10 s")
		}
		time.Sleep(20 * time.Millisecond) // a poll with a deadline: the server says nothing when it is ready
	}
}

// client is a client of s with the given URL options.
func (s *redisServer) client(t *testing.T, userinfo, options string) *redisClient {
	t.Helper()
	cfg, err := parseRedisURL("redis://" + userinfo + s.addr + options)
	if err != nil {
		t.Fatal(err)
	}
	c := newRedisClient(cfg)
	t.Cleanup(c.close)
	return c
}

func TestRedisClientCommands(t *testing.T) {
	s := startRedis(t)
	c := s.client(t, "", "")
	ctx := t.Context()
	if v, err := c.do(ctx, "SET", "greeting", "你好\r\nworld"); err != nil || v != "OK" {
		t.Fatalf("SET = %v, %v", v, err)
	}
	if v, err := c.do(ctx, "GET", "greeting"); err != nil || v != "你好\r\nworld" {
		t.Errorf("GET = %q, %v", v, err)
	}
	if v, err := c.do(ctx, "GET", "missing"); err != nil || v != nil {
		t.Errorf("GET of a missing key = %#v, %v; want nil", v, err)
	}
	var refused redisError
	if _, err := c.do(ctx, "INCR", "greeting"); !errors.As(err, &refused) || !strings.HasPrefix(string(refused), "ERR") {
		t.Errorf("INCR of a string = %v; want Redis's ERR", err)
	}
	replies, err := c.pipeline(ctx, [][]string{{"INCR", "n"}, {"INCRBY", "n", "41"}, {"HSET", "n", "f", "v"}, {"GET", "n"}})
	if err != nil || len(replies) != 4 || replies[1] != int64(42) || replies[3] != "42" {
		t.Fatalf("pipeline = %#v, %v", replies, err)
	}
	if _, refused := replies[2].(redisError); !refused {
		t.Errorf("HSET of a string in a pipeline = %#v; want a refusal among the replies", replies[2])
	}

	// A script, sent whole after the server forgot it (a restart, a failover).
	script := newRedisScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	for i, flush := range []bool{false, true, false} {
		if flush {
			if _, err := c.do(ctx, "SCRIPT", "FLUSH"); err != nil {
				t.Fatal(err)
			}
		}
		if v, err := script.run(ctx, c, []string{"counter"}, "10"); err != nil || v != int64(10*(i+1)) {
			t.Errorf("script run %d = %v, %v; want %d", i+1, v, err, 10*(i+1))
		}
	}
}

// AUTH with the default user's password or an ACL user, SELECT of a
// database; a wrong password is refused without being repeated.
func TestRedisClientAuthAndSelect(t *testing.T) {
	s := startRedis(t, "--requirepass", "default-secret")
	ctx := t.Context()
	if _, err := s.client(t, "", "").do(ctx, "PING"); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without a password = %v; want NOAUTH", err)
	}
	admin := s.client(t, ":default-secret@", "")
	if _, err := admin.do(ctx, "ACL", "SETUSER", "wxlogin", "on", ">user-secret", "~*", "+@all"); err != nil {
		t.Fatal(err)
	}
	for _, userinfo := range []string{"wxlogin:wrong@", ":wrong@"} {
		_, err := s.client(t, userinfo, "").do(ctx, "PING")
		if err == nil || !strings.Contains(err.Error(), "WRONGPASS") || strings.Contains(err.Error(), "wrong@") {
			t.Errorf("PING as %q = %v; want WRONGPASS, without the password", userinfo, err)
		}
	}
	user := s.client(t, "wxlogin:user-secret@", "/3")
	if v, err := user.do(ctx, "ACL", "WHOAMI"); err != nil || v != "wxlogin" {
		t.Errorf("ACL WHOAMI = %v, %v; want wxlogin", v, err)
	}
	if _, err := user.do(ctx, "SET", "k", "in db 3"); err != nil {
		t.Fatal(err)
	}
	if v, _ := admin.do(ctx, "GET", "k"); v != nil {
		t.Errorf("GET k in db 0 = %v; want nothing: it was set in db 3", v)
	}
	if v, _ := user.do(ctx, "GET", "k"); v != "in db 3" {
		t.Errorf("GET k in db 3 = %v", v)
	}
}

// A call ends with its context, even while Redis holds it (a blocking
// command, a stalled server); the connection is not reused, and the pool
// bounds the connections, so a caller beyond it waits within its context.
func TestRedisClientDeadlinesAndPoolBound(t *testing.T) {
	s := startRedis(t)
	c := s.client(t, "", "?pool=2")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.do(ctx, "BLPOP", "never", "0"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("BLPOP past the deadline = %v; want the deadline", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("BLPOP with a 100 ms deadline returned after %v", took)
	}
	if v, err := c.do(t.Context(), "PING"); err != nil || v != "PONG" {
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
			c.do(held, "BLPOP", "never", "0")
		})
	}
	<-started
	<-started
	waitFor(t, "both connections taken", func() bool { return len(c.single.slots) == 0 })
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	if _, err := c.do(short, "PING"); err == nil || !strings.Contains(err.Error(), "waiting for a connection") {
		t.Errorf("a third call with the pool full = %v; want it to wait and give up", err)
	}
	release()
	wg.Wait()
	if v, err := c.do(t.Context(), "PING"); err != nil || v != "PONG" {
		t.Errorf("PING once the pool has room = %v, %v", v, err)
	}
}

// A request's calls share one bound (withRedisBudgets): a call that Redis
// holds ends when the request has waited the bound in all, and the calls
// after it fail at once, unsent, with the bound spent; a call with a
// context no budget came with is bounded by the timeout alone.
func TestRedisCallsOfARequestShareOneBound(t *testing.T) {
	s := startRedis(t)
	c := s.client(t, "", "?timeout=5s")
	const bound = 200 * time.Millisecond
	var errs []error
	var sent []int64
	withRedisBudgets(bound, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, cmd := range [][]string{{"PING"}, {"BLPOP", "never", "0"}, {"PING"}, {"BLPOP", "never", "0"}} {
			before := c.roundTrips()
			_, err := c.do(r.Context(), cmd...)
			errs, sent = append(errs, err), append(sent, c.roundTrips()-before)
		}
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if errs[0] != nil || !errors.Is(errs[1], context.DeadlineExceeded) {
		t.Errorf("PING, then a call Redis holds = %v, %v; want the second to end with the bound", errs[0], errs[1])
	}
	for i := 2; i < 4; i++ {
		if !errors.Is(errs[i], errRedisBudgetSpent) || sent[i] != 0 {
			t.Errorf("call %d after the bound was spent = %v, %d round trips; want errRedisBudgetSpent, unsent", i+1, errs[i], sent[i])
		}
	}
	if _, err := c.do(t.Context(), "PING"); err != nil {
		t.Errorf("PING with no budget = %v", err)
	}
}

// Calls made while every connection is busy go together in one pipeline,
// and each gets its own replies, in its own order.
func TestRedisClientCarriesConcurrentCallsTogether(t *testing.T) {
	s := startRedis(t)
	c := s.client(t, "", "?pool=2")
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			key := "k" + strconv.Itoa(g)
			for i := range 30 {
				v := strconv.Itoa(g*1000 + i)
				replies, err := c.pipeline(t.Context(), [][]string{{"SET", key, v}, {"GET", key}, {"ECHO", key}})
				if err != nil || len(replies) != 3 || replies[0] != "OK" || replies[1] != v || replies[2] != key {
					t.Errorf("SET, GET, ECHO of %s = %v, %v; want OK, %s, %s", key, replies, err, v, key)
					return
				}
				if got, err := c.do(t.Context(), "INCR", key+":n"); err != nil || got != int64(i+1) {
					t.Errorf("INCR %s:n = %v, %v; want %d", key, got, err, i+1)
					return
				}
			}
		})
	}
	wg.Wait()
	calls, writes := c.single.roundTrips.Load(), c.single.writes.Load()
	if calls != 64*30*2 || writes >= calls {
		t.Errorf("%d calls in %d writes; want 3840 calls in fewer writes", calls, writes)
	}
	t.Logf("%d calls in %d writes", calls, writes)
}

// A call queued behind a connection that a hung Redis holds gives up at
// the pool's timeout, though its context has no deadline: waiting still,
// or sent at last on a new connection once the timeout freed the first.
// (The server accepts connections and never answers.)
func TestRedisClientQueuedCallsKeepTheTimeout(t *testing.T) {
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
	cfg, err := parseRedisURL("redis://" + hung.Addr().String() + "?pool=1&timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	c := newRedisClient(cfg)
	defer c.close()
	go c.do(context.Background(), "GET", "k")
	waitFor(t, "the connection taken", func() bool { return len(c.single.slots) == 0 })
	start := time.Now()
	queued := make(chan error, 1)
	go func() {
		_, err := c.do(context.Background(), "PING")
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

// A server that is not there fails at once with errRedisDial, naming the
// address, and the pool is whole afterwards.
func TestRedisClientServerDown(t *testing.T) {
	port := freeRedisPort(t)
	cfg, _ := parseRedisURL("redis://127.0.0.1:" + strconv.Itoa(port) + "?pool=1&timeout=500ms")
	c := newRedisClient(cfg)
	defer c.close()
	for range 3 { // the one slot of the pool is given back each time
		_, err := c.do(t.Context(), "PING")
		if !errors.Is(err, errRedisDial) || !strings.Contains(err.Error(), strconv.Itoa(port)) {
			t.Fatalf("PING of no server = %v; want errRedisDial naming the address", err)
		}
	}
}

// BenchmarkRedisPing is one round trip to a local redis-server, from
// concurrent callers: what each round trip of a route costs wxlogin
// (BENCHMARKS.md, Redis). Its CPU profile is mostly the kernel's write and
// read.
func BenchmarkRedisPing(b *testing.B) { benchmarkPing(b, 1) }

// BenchmarkRedisPingCrowded is BenchmarkRedisPing from 64 callers at once,
// as a loaded wxlogin makes them: with every connection busy, calls queue
// and go together, so writes/op falls below one.
func BenchmarkRedisPingCrowded(b *testing.B) { benchmarkPing(b, 32) }

// benchmarkPing sends PINGs from parallelism callers per CPU.
func benchmarkPing(b *testing.B, parallelism int) {
	s := startRedis(b)
	cfg, err := parseRedisURL("redis://" + s.addr)
	if err != nil {
		b.Fatal(err)
	}
	c := newRedisClient(cfg)
	defer c.close()
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.do(b.Context(), "PING"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(c.single.writes.Load())/float64(b.N), "writes/op")
}
