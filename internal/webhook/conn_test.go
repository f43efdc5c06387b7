package webhook

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawReceiver is a receiver that reads each post as net/http does and
// answers it with the bytes answer gives for (the connection's number, the
// post's number on it, its webhook-id); it counts the posts it read.
type rawReceiver struct {
	mu    sync.Mutex
	posts int
}

func (r *rawReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts
}

// after, if not nil, runs once each answer is written.
func startRaw(t *testing.T, answer func(conn, n int, id string) string, after func(conn, n int, nc net.Conn)) (*rawReceiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &rawReceiver{}
	go func() {
		for c := 0; ; c++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c int) {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					r.mu.Lock()
					r.posts++
					r.mu.Unlock()
					if _, err := io.WriteString(nc, answer(c, n, req.Header.Get("webhook-id"))); err != nil {
						return
					}
					if after != nil {
						after(c, n, nc)
					}
				}
			}(c)
		}
	}()
	return r, "http://" + ln.Addr().String() + "/hook"
}

// pendings are src's events, each to post.
func pendings(src *memorySource) []*pending {
	var ps []*pending
	for _, e := range src.list {
		ps = append(ps, &pending{event: e})
	}
	return ps
}

const (
	answer204 = "HTTP/1.1 204 No Content\r\n\r\n"
	answer500 = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
)

// A post counts as taken only if the receiver answered that post 2xx,
// whatever else it sends: interim answers (1xx) before the final one are
// read past, as RFC 9110 has a client do; a 1xx, 204 or 304 that says it
// has a body, and bytes no post asked for, end the connection before they
// can be read as another post's answer. Each case posts two events, the
// second of which the receiver refuses.
func TestAPostIsTakenOnlyOnItsOwn2xx(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first string // the answer to the first post
		// want: whether the first post is taken; the second never is
		want bool
	}{
		{"103 Early Hints, then 204", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + answer204, true},
		{"100 Continue, then 204", "HTTP/1.1 100 Continue\r\n\r\n" + answer204, true},
		{"101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n" + answer204, false},
		{"204 with a body", "HTTP/1.1 204 No Content\r\nContent-Length: 38\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
		{"304 chunked", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n" + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"a 1xx with a body", "HTTP/1.1 103 Early Hints\r\nContent-Length: 38\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newMemorySource(1, 2)
			refused := src.list[1].ID
			_, url := startRaw(t, func(_, _ int, id string) string {
				if id == refused {
					return answer500
				}
				return tc.first
			}, nil)
			c := newConn(url, 5*time.Second, nil)
			defer c.close()
			errs := c.post(t.Context(), newSigner(NewSecret()), pendings(src))
			if errs[1] == nil {
				t.Error("the second post, answered 500, counted as taken")
			}
			if taken := errs[0] == nil; taken != tc.want {
				t.Errorf("the first post taken: %v (%v); want %v", taken, errs[0], tc.want)
			}
		})
	}
}

// Bytes the receiver sends beyond a round's answers, or while the
// connection is idle, are no answer to the next round's posts: the
// connection is dropped and the next round goes on a new one.
func TestBytesNoPostAskedForAnswerNothing(t *testing.T) {
	const stray = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	for _, idle := range []bool{false, true} {
		name := map[bool]string{false: "with the round's answers", true: "while idle"}[idle]
		t.Run(name, func(t *testing.T) {
			src := newMemorySource(1)
			speak, spoken := make(chan struct{}), make(chan struct{})
			_, url := startRaw(t, func(conn, n int, _ string) string {
				if conn == 0 && n == 0 && !idle {
					return answer500 + stray
				}
				return answer500
			}, func(conn, n int, nc net.Conn) {
				if conn == 0 && n == 0 && idle {
					<-speak
					io.WriteString(nc, stray)
					close(spoken)
				}
			})
			c := newConn(url, 5*time.Second, nil)
			defer c.close()
			sign := newSigner(NewSecret())
			if errs := c.post(t.Context(), sign, pendings(src)); errs[0] == nil {
				t.Fatal("round 1: a post answered 500 counted as taken")
			}
			if idle {
				close(speak)
				<-spoken
			}
			if errs := c.post(t.Context(), sign, pendings(src)); errs[0] == nil {
				t.Error("round 2: a post answered 500 counted as taken, by an answer no post asked for")
			}
		})
	}
}

// A round on a kept-alive connection that runs out of time is not tried
// again on a new one: a round takes Timeout at most, and the receiver
// reads its posts once.
func TestARoundThatTimesOutIsNotTriedAgain(t *testing.T) {
	src := newMemorySource(1)
	release := make(chan struct{})
	defer close(release)
	r, url := startRaw(t, func(conn, n int, _ string) string {
		if conn == 0 && n == 0 {
			return answer204
		}
		<-release // never answers in time
		return answer204
	}, nil)
	c := newConn(url, 200*time.Millisecond, nil)
	defer c.close()
	sign := newSigner(NewSecret())
	if errs := c.post(t.Context(), sign, pendings(src)); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if errs := c.post(t.Context(), sign, pendings(src)); errs[0] == nil {
		t.Fatal("a post never answered counted as taken")
	}
	if n := r.count(); n != 2 {
		t.Errorf("the receiver read %d posts; want 2: the round that timed out was posted again", n)
	}
}

// An answer whose headers run past maxAnswer fails its post, and the
// sender reads no further: a receiver cannot make it hold what it sends.
func TestAnEndlessAnswerFailsItsPost(t *testing.T) {
	src := newMemorySource(1)
	big := "HTTP/1.1 204 No Content\r\nX-Big: " + strings.Repeat("a", 2*maxAnswer) + "\r\n\r\n"
	_, url := startRaw(t, func(int, int, string) string { return big }, nil)
	c := newConn(url, 5*time.Second, nil)
	defer c.close()
	if errs := c.post(t.Context(), newSigner(NewSecret()), pendings(src)); errs[0] == nil {
		t.Error("a post answered with headers past maxAnswer counted as taken")
	}
}

// A connection idle for longer than a round's Timeout is used again, not
// taken for one the receiver spoke on or closed: its last deadline has
// passed, and the check for unsolicited bytes is not fooled by it.
func TestAConnectionIdlePastItsDeadlineIsKept(t *testing.T) {
	src := newMemorySource(1)
	var mu sync.Mutex
	conns := 0
	_, url := startRaw(t, func(conn, _ int, _ string) string {
		mu.Lock()
		conns = max(conns, conn+1)
		mu.Unlock()
		return answer204
	}, nil)
	const timeout = 20 * time.Millisecond
	c := newConn(url, timeout, nil)
	defer c.close()
	sign := newSigner(NewSecret())
	for round := range 2 {
		if errs := c.post(t.Context(), sign, pendings(src)); errs[0] != nil {
			t.Fatalf("round %d: %v", round+1, errs[0])
		}
		time.Sleep(2 * timeout) // idle past the round's deadline: no event can stand in for time passing
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("two rounds, idle past their deadline between them, took %d connections; want the one, kept alive", conns)
	}
}

// A round on a kept-alive connection is posted again on a new one only
// when the receiver sent no byte of an answer: it closed the connection
// while idle, as a server may (net/http's client re-sends then too). An
// answer on it that is no 2xx, however odd (a switch of protocols, headers
// past maxAnswer, bytes that are not HTTP), fails the round, to be tried
// again after its wait like any refusal: not posted at once on a new
// connection, where a 2xx would hide it.
func TestOnlyASilentKeptAliveConnectionIsPostedAgain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second string // the answer to the round on the kept-alive connection; "" closes it unanswered
		// want: whether the round is posted again on a new connection
		// (and taken there)
		again bool
	}{
		{"closed unanswered", "", true},
		{"500, closing", "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false},
		{"101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", false},
		{"headers past maxAnswer", "HTTP/1.1 204 No Content\r\nX-Big: " + strings.Repeat("a", 2*maxAnswer) + "\r\n\r\n", false},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n", false},
		{"a 1xx with a body", "HTTP/1.1 103 Early Hints\r\nContent-Length: 38\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newMemorySource(1)
			r, url := startRaw(t, func(conn, n int, _ string) string {
				if conn == 0 && n == 1 {
					return tc.second
				}
				return answer204
			}, func(conn, n int, nc net.Conn) {
				if conn == 0 && n == 1 && tc.second == "" {
					nc.Close()
				}
			})
			c := newConn(url, 5*time.Second, nil)
			defer c.close()
			sign := newSigner(NewSecret())
			if errs := c.post(t.Context(), sign, pendings(src)); errs[0] != nil {
				t.Fatalf("round 1: %v", errs[0])
			}
			errs := c.post(t.Context(), sign, pendings(src))
			if taken := errs[0] == nil; taken != tc.again {
				t.Errorf("round 2 taken: %v (%v); want %v", taken, errs[0], tc.again)
			}
			wantPosts := map[bool]int{false: 2, true: 3}[tc.again]
			if n := r.count(); n != wantPosts {
				t.Errorf("the receiver read %d posts; want %d", n, wantPosts)
			}
		})
	}
}

// TestAPostIsWrittenWithoutAllocating: a round's posts, body, signature
// and headers, are written into the connection's buffers, which a round
// reuses: a hundred posts a round cost the collector nothing.
func TestAPostIsWrittenWithoutAllocating(t *testing.T) {
	c := newConn("http://127.0.0.1:1/hook?team=a", time.Second, nil)
	sign := newSigner(NewSecret())
	p := pendings(newMemorySource(1))[0]
	c.buf = c.appendRequest(c.buf[:0], sign, p) // the buffers grow once
	if n := testing.AllocsPerRun(100, func() { c.buf = c.appendRequest(c.buf[:0], sign, p) }); n != 0 {
		t.Errorf("appendRequest allocates %v times a post; want none", n)
	}
}
