package limits

import (
	"cmp"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
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
	limited := Conns(srv, ln, 3).(*connLimiter)
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

// Which connection makes room, when every address holds one connection at
// most: the oldest that has sent no request yet; else one idle after a
// request for IdleGrace, the oldest first; never one that finished a
// request less than IdleGrace ago, which may be about to send the next.
// (Pipes have no address: all three are counted under one, and it holds
// three.)
func TestConnLimiterChoosesItsVictim(t *testing.T) {
	conn := func() net.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a
	}
	start := time.Now()
	l := newConnLimiter(nil, 3)
	add := func(c net.Conn, state connState, since time.Duration) {
		tr := newTracked(c, connKey(c.RemoteAddr()), connBusy)
		l.open[c] = tr
		l.waitLocked(tr, state, start.Add(since))
	}
	justIdle, longIdle, fresh := conn(), conn(), conn()

	add(justIdle, connIdle, 0)
	if victim, wait := l.victimLocked(start.Add(300 * time.Millisecond)); victim != nil || wait != IdleGrace-300*time.Millisecond {
		t.Errorf("one connection idle 300 ms: victim %v, wait %v; want none, and %v", victim, wait, IdleGrace-300*time.Millisecond)
	}
	add(fresh, connFresh, 200*time.Millisecond)
	if victim, _ := l.victimLocked(start.Add(300 * time.Millisecond)); victim != fresh {
		t.Error("a connection with no request yet, and one just idle after a request: want the first closed")
	}
	add(longIdle, connIdle, -5*time.Second)
	l.idle.MoveToFront(&l.open[longIdle].all)
	l.peers[netip.Addr{}].idle.MoveToFront(&l.open[longIdle].own)
	if victim, _ := l.victimLocked(start.Add(300 * time.Millisecond)); victim != longIdle {
		t.Error("a connection idle 5 s, older than the one with no request yet: want it closed first")
	}
}

// addrConn is a connection from a given client address.
type addrConn struct {
	net.Conn
	remote *net.TCPAddr
}

// RemoteAddr is the client's address, as a TCP connection's is.
func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// The address holding the most connections without a request under way
// gives one up, fresh or idle past its grace, even when another address's
// connection is older; another address's fresh connection is never taken
// instead, and with nothing of the busiest address's to close, a new
// connection waits for it, unless a connection idle past its grace can go.
func TestConnLimiterMakesTheBusiestAddressPay(t *testing.T) {
	type conn struct {
		from  string // the client's address
		state connState
		since time.Duration // before now
	}
	tests := []struct {
		name   string
		conns  []conn
		victim int           // the index of the one closed, or -1 for none
		wait   time.Duration // with none closed, how long until one may be
	}{
		{"a flood's fresh connections before another's older fresh one",
			[]conn{{"127.0.0.2", connFresh, 50 * time.Millisecond}, {"127.0.0.1", connFresh, 2 * time.Millisecond}, {"127.0.0.1", connFresh, time.Millisecond}},
			1, 0},
		{"a flood's fresh connections before another's connection idle for long",
			[]conn{{"127.0.0.2", connIdle, 5 * time.Second}, {"127.0.0.1", connFresh, 2 * time.Millisecond}, {"127.0.0.1", connFresh, time.Millisecond}},
			1, 0},
		{"within the busiest address, its connection idle for long before its fresh one",
			[]conn{{"127.0.0.1", connFresh, 2 * time.Millisecond}, {"127.0.0.1", connIdle, 5 * time.Second}, {"127.0.0.2", connFresh, 10 * time.Second}},
			1, 0},
		{"the busiest address's connections just idle: another's idle for long goes",
			[]conn{{"127.0.0.1", connIdle, 300 * time.Millisecond}, {"127.0.0.1", connIdle, 200 * time.Millisecond}, {"127.0.0.3", connIdle, 5 * time.Second}, {"127.0.0.2", connFresh, 10 * time.Millisecond}},
			2, 0},
		{"the busiest address's connections just idle: another's fresh one is kept, and the wait is for the busiest",
			[]conn{{"127.0.0.1", connIdle, 300 * time.Millisecond}, {"127.0.0.1", connIdle, 200 * time.Millisecond}, {"127.0.0.2", connFresh, 10 * time.Millisecond}},
			-1, IdleGrace - 300*time.Millisecond},
		{"one connection an address: the oldest fresh one",
			[]conn{{"127.0.0.1", connFresh, 2 * time.Millisecond}, {"127.0.0.2", connFresh, 3 * time.Millisecond}, {"127.0.0.3", connIdle, 200 * time.Millisecond}},
			1, 0},
		{"IPv6 addresses of one /64 are one client",
			[]conn{{"2001:db8:0:1::9", connFresh, 50 * time.Millisecond}, {"2001:db8::1", connFresh, 2 * time.Millisecond}, {"2001:db8::2", connFresh, time.Millisecond}},
			1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			l := newConnLimiter(nil, len(tt.conns))
			var conns []net.Conn
			// Added oldest first, as they would have come.
			order := make([]int, len(tt.conns))
			for i := range order {
				order[i] = i
			}
			slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(tt.conns[b].since, tt.conns[a].since) })
			for i, c := range tt.conns {
				a, b := net.Pipe()
				t.Cleanup(func() { a.Close(); b.Close() })
				conns = append(conns, addrConn{a, &net.TCPAddr{IP: net.ParseIP(c.from), Port: 40000 + i}})
			}
			for _, i := range order {
				tr := newTracked(conns[i], connKey(conns[i].RemoteAddr()), connBusy)
				l.open[conns[i]] = tr
				l.waitLocked(tr, tt.conns[i].state, now.Add(-tt.conns[i].since))
			}
			victim, wait := l.victimLocked(now)
			got := slices.Index(conns, victim)
			if got != tt.victim || (victim == nil && wait != tt.wait) {
				t.Errorf("victim %d, wait %v; want %d, wait %v", got, wait, tt.victim, tt.wait)
			}
		})
	}
}

// The limiter's count of connections waiting per address follows each
// connection through its states, and forgets an address that holds none.
func TestConnLimiterCountsEachAddress(t *testing.T) {
	l := newConnLimiter(nil, 10)
	now := time.Now()
	var conns []net.Conn
	for i, from := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"} {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		c := addrConn{a, &net.TCPAddr{IP: net.ParseIP(from), Port: 40000 + i}}
		conns = append(conns, c)
		tr := newTracked(c, connKey(c.RemoteAddr()), connBusy)
		l.open[c] = tr
		l.waitLocked(tr, connFresh, now)
	}
	check := func(when string, most int, waiting map[string]int) {
		t.Helper()
		got := map[string]int{}
		for addr, p := range l.peers {
			got[addr.String()] = p.waiting()
		}
		if l.most != most || !maps.Equal(got, waiting) {
			t.Errorf("%s: most %d, waiting %v; want %d, %v", when, l.most, got, most, waiting)
		}
	}
	check("five fresh", 3, map[string]int{"127.0.0.1": 3, "127.0.0.2": 2})
	l.track(conns[0], http.StateActive)
	l.track(conns[1], http.StateActive)
	check("two of 127.0.0.1's busy", 2, map[string]int{"127.0.0.1": 1, "127.0.0.2": 2})
	l.track(conns[0], http.StateIdle)
	check("one of them idle again", 2, map[string]int{"127.0.0.1": 2, "127.0.0.2": 2})
	for _, c := range conns[2:] {
		l.track(c, http.StateClosed)
	}
	check("127.0.0.2's closed", 1, map[string]int{"127.0.0.1": 1})
	l.track(conns[0], http.StateActive)
	check("none waiting", 0, map[string]int{})
	for n, rank := range l.ranks {
		if rank.Len() != 0 {
			t.Errorf("rank %d holds %d addresses though none waits", n, rank.Len())
		}
	}
}

// BenchmarkTrack is what the limiter does for one request on a kept-alive
// connection (ConnState active, then idle) while 63 others of the same
// address wait between theirs, as under scripts/load's 64 connections.
func BenchmarkTrack(b *testing.B) {
	l := newConnLimiter(nil, 1000)
	conns := make([]net.Conn, 64)
	for i := range conns {
		a, c := net.Pipe()
		b.Cleanup(func() { a.Close(); c.Close() })
		conns[i] = addrConn{a, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1000 + i}}
		l.open[conns[i]] = newTracked(conns[i], connKey(conns[i].RemoteAddr()), connBusy)
		l.track(conns[i], http.StateIdle)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := conns[i%len(conns)]
		l.track(c, http.StateActive)
		l.track(c, http.StateIdle)
		i++
	}
}
