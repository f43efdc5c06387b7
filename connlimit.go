package main

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// This file keeps wxlogin under its limit of open files however many
// clients connect. Without a cap, a flood of connections uses up the
// limit, every accept fails ("too many open files") and net/http backs off
// for up to a second at a time, while the store and the WeChat client
// cannot open what they need: a normal login took 10 to 15 s. With one,
// a connection past the cap waits in the kernel's backlog, and one that
// carries no request (still sending its headers, or idle between requests)
// is closed to make room; a request under way is never cut off.

// connReserve is how many open files wxlogin keeps for itself under the
// limit, besides the WeChat clients' connections: the store's files, the
// token file, the admin server, standard streams.
const connReserve = 64

// defaultMaxConns is the cap under the process's limit of open files
// (which Go raises to the hard limit at start-up): the limit less what
// wxlogin needs for itself and for apps WeChat clients, each of which keeps
// up to 64 idle connections. Under a limit too small for that, half of it.
func defaultMaxConns(apps int) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 20 // no limit worth the name
	}
	limit := int(lim.Cur)
	return max(limit-connReserve-64*apps, limit/2)
}

// connLimiter is a listener that holds at most max connections open: its
// Accept waits, or closes the connection that has waited longest without
// a request, until there is room. Its track must be the server's
// ConnState, so that it knows which connections carry a request.
type connLimiter struct {
	net.Listener
	max int

	mu    sync.Mutex // guards open and idle
	room  sync.Cond  // signalled, with mu, when a connection closes
	open  map[net.Conn]*list.Element
	idle  *list.List // of net.Conn: those with no request under way, the oldest first
	ended bool       // the listener is closed
}

// limitConns caps the connections srv serves from ln at maxConns; it
// returns the listener to serve.
func limitConns(srv *http.Server, ln net.Listener, maxConns int) net.Listener {
	l := &connLimiter{Listener: ln, max: maxConns, open: map[net.Conn]*list.Element{}, idle: list.New()}
	l.room.L = &l.mu
	srv.ConnState = l.track
	return l
}

// Accept waits for room under the cap, then accepts. A connection it
// accepts counts as idle until the server starts reading a request on it.
func (l *connLimiter) Accept() (net.Conn, error) {
	l.mu.Lock()
	for len(l.open) >= l.max && !l.ended {
		if front := l.idle.Front(); front != nil {
			victim := front.Value.(net.Conn)
			l.forgetLocked(victim)
			victim.Close() // Its file is free from here; the server sees a closed connection.
			continue
		}
		l.room.Wait()
	}
	l.mu.Unlock()
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open[c] = l.idle.PushBack(c)
	return c, nil
}

// track is the server's ConnState: it follows which connections carry a
// request, and which have closed.
func (l *connLimiter) track(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.open[c]
	if !ok {
		return // closed by Accept to make room, or not one of ours
	}
	switch state {
	case http.StateActive:
		if e != nil {
			l.idle.Remove(e)
			l.open[c] = nil
		}
	case http.StateIdle:
		if e == nil {
			l.open[c] = l.idle.PushBack(c)
		}
	case http.StateClosed, http.StateHijacked:
		l.forgetLocked(c)
	}
}

// forgetLocked stops counting c. l.mu is held.
func (l *connLimiter) forgetLocked(c net.Conn) {
	if e := l.open[c]; e != nil {
		l.idle.Remove(e)
	}
	delete(l.open, c)
	l.room.Signal()
}

// Close closes the listener and lets a waiting Accept return.
func (l *connLimiter) Close() error {
	l.mu.Lock()
	l.ended = true
	l.room.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}
