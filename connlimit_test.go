package main

import (
	"container/list"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// At the cap, a connection that carries no request is closed to make room
// for a new one, and one with a request under way is not.
func TestConnLimiterClosesIdleConnectionsNotRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release, arrived := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "ok")
	})}
	limited := limitConns(srv, ln, 3).(*connLimiter)
	go srv.Serve(limited)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	// A request under way, on a connection of its own.
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(body)
	}()
	// Under way means in its handler: until the server has read the
	// request, its connection is one that has sent none, which the limiter
	// may close.
	<-arrived

	// A flood of connections that send nothing, well past the cap.
	for range 10 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a request behind a flood of idle connections: %v", err)
	}
	resp.Body.Close()
	limited.mu.Lock()
	open := len(limited.open)
	limited.mu.Unlock()
	if open > 3 {
		t.Errorf("%d connections open; the cap is 3", open)
	}

	close(release)
	if got := <-slow; got != "ok" {
		t.Errorf("the request under way while the flood came got %q; want it answered", got)
	}
}

// waitFor polls cond until it holds, or fails the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 5*time.Second, what, cond)
}

// waitWithin is waitFor with a deadline of its own, for what takes a
// busy machine longer (a Redis Cluster forming, a failover).
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Under a limit of 300 open files, 400 connections that send nothing leave
// a normal login answered within 1 s, and wxlogin never runs out of files.
func TestAFloodOfIdleConnectionsLeavesLoginsAnswered(t *testing.T) {
	c := startLimitedProcess(t, "-n 300", nil, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-login-rate", "0")
	host := strings.TrimPrefix(c.url, "http://")
	for range 400 {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatalf("dialling the flood: %v", err)
		}
		defer conn.Close()
	}
	start := time.Now()
	got := post(t, http.MethodPost, c.url+"/login", jsonCT, `{"code":"`+mockCode(t, c.url, "alice")+`"}`)
	took := time.Since(start)
	if got.env.Status != 0 {
		t.Fatalf("a login behind 400 idle connections = %s", got.raw)
	}
	t.Logf("a login (two requests, and the call to the fake WeChat) behind 400 idle connections took %v", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("a login behind 400 idle connections took %v; want at most 1 s", took)
	}
	if logs := c.logs.String(); strings.Contains(logs, "too many open files") {
		t.Errorf("wxlogin ran out of open files:\n%s", logs)
	}
	if !strings.Contains(c.logs.String(), "max_conns=172") {
		t.Errorf("the cap under 300 open files is not 300 - 64 - 64 for one app:\n%s", c.logs.String())
	}
}

// Which connection makes room: the oldest that has sent no request yet;
// else one idle after a request for idleGrace, the oldest first; never
// one that finished a request less than idleGrace ago, which may be about
// to send the next.
func TestConnLimiterChoosesItsVictim(t *testing.T) {
	conn := func() net.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a
	}
	start := time.Now()
	l := &connLimiter{open: map[net.Conn]*list.Element{}, fresh: list.New(), idle: list.New()}
	add := func(in *list.List, c net.Conn, since time.Duration) {
		l.open[c] = in.PushBack(&waiting{conn: c, since: start.Add(since), in: in})
	}
	justIdle, longIdle, fresh := conn(), conn(), conn()

	add(l.idle, justIdle, 0)
	if victim, wait := l.victimLocked(start.Add(300 * time.Millisecond)); victim != nil || wait != idleGrace-300*time.Millisecond {
		t.Errorf("one connection idle 300 ms: victim %v, wait %v; want none, and %v", victim, wait, idleGrace-300*time.Millisecond)
	}
	add(l.fresh, fresh, 200*time.Millisecond)
	if victim, _ := l.victimLocked(start.Add(300 * time.Millisecond)); victim != fresh {
		t.Error("a connection with no request yet, and one just idle after a request: want the first closed")
	}
	add(l.idle, longIdle, -5*time.Second)
	l.idle.MoveToFront(l.open[longIdle])
	if victim, _ := l.victimLocked(start.Add(300 * time.Millisecond)); victim != longIdle {
		t.Error("a connection idle 5 s, older than the one with no request yet: want it closed first")
	}
}
