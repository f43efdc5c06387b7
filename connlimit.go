package main

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// This file keeps wxlogin under its limit of open files however many
// clients connect. Without a cap, a flood of connections uses up the
// limit, every accept fails ("too many open files") and net/http backs off
// for up to a second at a time, while the store and the WeChat client
// cannot open what they need: a normal login took 10 to 15 s. With one, a
// connection past the cap waits in the kernel's backlog, and one that
// carries no request is closed to make room, as an idle timeout would
// close it. A request being handled is never cut off. (net/http counts a
// request from when its headers are read: a request sent on a connection
// at the moment it is closed fails, as it would at an idle timeout.)

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

// idleGrace is how long a connection must have gone without a request,
// after one, before it is closed to make room: a client that sends its next
// request soon after its last one keeps its connection.
const idleGrace = time.Second

// connLimiter is a listener that holds at most max connections open: past
// it, its Accept closes the oldest of the connections that have sent no
// request yet (a flood of them is what fills the cap), or else the one that
// has gone longest without a request for more than idleGrace, or waits. Its
// track must be the server's ConnState, so that it knows which connections
// carry a request.
type connLimiter struct {
	net.Listener
	max int

	mu    sync.Mutex // guards the fields below
	room  sync.Cond  // signalled, with mu, when a connection closes, or one may have become closable
	open  map[net.Conn]*list.Element
	fresh *list.List // of *waiting: accepted, no request yet; oldest first
	idle  *list.List // of *waiting: between requests; oldest first
	ended bool       // the listener is closed
}

// waiting is a connection with no request under way, since when.
type waiting struct {
	conn  net.Conn
	since time.Time
	in    *list.List // fresh or idle
}

// limitConns caps the connections srv serves from ln at maxConns; it
// returns the listener to serve.
func limitConns(srv *http.Server, ln net.Listener, maxConns int) net.Listener {
	l := &connLimiter{Listener: ln, max: maxConns, open: map[net.Conn]*list.Element{}, fresh: list.New(), idle: list.New()}
	l.room.L = &l.mu
	srv.ConnState = l.track
	return l
}

// Accept waits for room under the cap, then accepts.
func (l *connLimiter) Accept() (net.Conn, error) {
	l.mu.Lock()
	for len(l.open) >= l.max && !l.ended {
		victim, wait := l.victimLocked(time.Now())
		if victim != nil {
			l.forgetLocked(victim)
			victim.Close() // Its file is free from here; the server sees a closed connection.
			continue
		}
		if wait > 0 { // An idle connection becomes closable then.
			t := time.AfterFunc(wait, func() {
				l.mu.Lock()
				l.room.Broadcast()
				l.mu.Unlock()
			})
			l.room.Wait()
			t.Stop()
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
	l.open[c] = l.fresh.PushBack(&waiting{conn: c, since: time.Now(), in: l.fresh})
	return c, nil
}

// victimLocked is the connection to close to make room, or nil and how
// long until an idle one may be closed (0: none may be). l.mu is held.
func (l *connLimiter) victimLocked(now time.Time) (net.Conn, time.Duration) {
	oldestIdle := l.idle.Front()
	if oldestIdle != nil {
		if w := oldestIdle.Value.(*waiting); now.Sub(w.since) >= idleGrace {
			if f := l.fresh.Front(); f == nil || !f.Value.(*waiting).since.Before(w.since) {
				return w.conn, 0
			}
		}
	}
	if f := l.fresh.Front(); f != nil {
		return f.Value.(*waiting).conn, 0
	}
	if oldestIdle != nil {
		return nil, idleGrace - now.Sub(oldestIdle.Value.(*waiting).since)
	}
	return nil, 0
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
			e.Value.(*waiting).in.Remove(e)
			l.open[c] = nil
		}
	case http.StateIdle:
		if e == nil {
			l.open[c] = l.idle.PushBack(&waiting{conn: c, since: time.Now(), in: l.idle})
		}
	case http.StateClosed, http.StateHijacked:
		l.forgetLocked(c)
	}
}

// forgetLocked stops counting c. l.mu is held.
func (l *connLimiter) forgetLocked(c net.Conn) {
	if e := l.open[c]; e != nil {
		e.Value.(*waiting).in.Remove(e)
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
