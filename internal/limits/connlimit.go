// Package limits keeps one client from taking what every client needs:
// Conns caps the connections served at once below the process's limit of
// open files, making room by closing a connection of the address that
// holds the most; LoginLimiter is the login limit, a token bucket per
// client address; and TrustedProxies says who the client is when a reverse
// proxy forwards its request.
package limits

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// The connection cap keeps wxlogin under its limit of open files however
// many clients connect. Without a cap, a flood of connections uses up the
// limit, every accept fails ("too many open files") and net/http backs off
// for up to a second at a time, while the store and the WeChat client
// cannot open what they need: a normal login took 10 to 15 s. With one, a
// connection past the cap waits in the kernel's backlog, and one that
// carries no request is closed to make room, as an idle timeout would
// close it. A request being handled is never cut off. (net/http counts a
// request from when its headers are read: a request sent on a connection
// at the moment it is closed fails, as it would at an idle timeout.)
//
// Which connection makes room is decided per client address: the address
// holding the most connections without a request gives one up. A client
// that reopens every connection the cap closes, and sends nothing on them,
// then only ever closes its own, and another address's connection, fresh
// or idle, is left to carry its request. Only the socket's peer is known
// here, before any request is read: behind a reverse proxy every connection
// is the proxy's, and the proxy is where such a flood is stopped
// (docs/operations.md, -max-conns).

// connReserve is how many open files wxlogin keeps for itself under the
// limit, besides the WeChat clients' connections: the store's files, the
// token file, the admin server, standard streams.
const connReserve = 64

// DefaultMaxConns is the cap under the process's limit of open files
// (which Go raises to the hard limit at start-up): the limit less what
// wxlogin needs for itself and for apps WeChat clients, each of which keeps
// up to 64 idle connections. Under a limit too small for that, half of it.
func DefaultMaxConns(apps int) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 20 // no limit worth the name
	}
	limit := int(lim.Cur)
	return max(limit-connReserve-64*apps, limit/2)
}

// IdleGrace is how long a connection must have gone without a request,
// after one, before it is closed to make room: a client that sends its next
// request soon after its last one keeps its connection.
const IdleGrace = time.Second

// connLimiter is a listener that holds at most max connections open. Past
// it, its Accept closes a connection that carries no request (victimLocked
// says which), or waits until one may be closed. Its track must be the
// server's ConnState, so that it knows which connections carry a request.
type connLimiter struct {
	net.Listener
	max int

	mu    sync.Mutex // guards the fields below
	room  sync.Cond  // signalled, with mu, when a connection closes, or one may have become closable
	open  map[net.Conn]*tracked
	fresh chain[*tracked] // accepted, no request yet, from any address; oldest first
	idle  chain[*tracked] // between requests, from any address; oldest first
	peers map[netip.Addr]*peer
	// ranks are the addresses by how many connections each holds waiting:
	// ranks[n] those holding n. A rank stays once made, empty or not.
	ranks []*chain[*peer]
	most  int  // the most connections any one address holds waiting
	ended bool // the listener is closed
}

// connState is where a connection is in its life, as the limiter sees it.
type connState int

const (
	connFresh connState = iota // accepted, no request yet
	connBusy                   // a request under way
	connIdle                   // between requests
)

// tracked is one open connection: where it is, since when, and the address
// it is counted under.
type tracked struct {
	conn  net.Conn
	from  netip.Addr
	state connState
	since time.Time      // when it became fresh or idle
	all   link[*tracked] // its place in the limiter's fresh or idle list, while it waits
	own   link[*tracked] // and in its address's
}

// newTracked is c, from, as the limiter tracks it, in state.
func newTracked(c net.Conn, from netip.Addr, state connState) *tracked {
	t := &tracked{conn: c, from: from, state: state}
	t.all.value, t.own.value = t, t
	return t
}

// peer is one client address's connections that wait, fresh or idle:
// addresses holding none are forgotten.
type peer struct {
	fresh, idle chain[*tracked] // oldest first
	rank        link[*peer]     // its place in the limiter's ranks
}

// waiting is how many connections p holds without a request under way.
func (p *peer) waiting() int { return p.fresh.Len() + p.idle.Len() }

// Conns caps the connections srv serves from ln at maxConns; it
// returns the listener to serve.
func Conns(srv *http.Server, ln net.Listener, maxConns int) net.Listener {
	l := newConnLimiter(ln, maxConns)
	srv.ConnState = l.track
	return l
}

// newConnLimiter is a connLimiter on ln, which holds at most maxConns.
func newConnLimiter(ln net.Listener, maxConns int) *connLimiter {
	l := &connLimiter{Listener: ln, max: maxConns, open: map[net.Conn]*tracked{}, peers: map[netip.Addr]*peer{}}
	l.room.L = &l.mu
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
	t := newTracked(c, connKey(c.RemoteAddr()), connBusy)
	l.open[c] = t
	l.waitLocked(t, connFresh, time.Now())
	return c, nil
}

// connKey is the address a connection is counted under: its peer's, as the
// login limit counts it (IPv6 by /64). A connection that is not TCP, such
// as a pipe in a test, is counted under the zero address.
func connKey(a net.Addr) netip.Addr {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	return Key(tcp.AddrPort().Addr().Unmap())
}

// victimLocked is the connection to close to make room, or nil and how
// long until an idle one may be closed (0: none may be). l.mu is held.
//
// The address holding the most connections that wait gives up its oldest
// one that may be closed: one that has sent no request yet, or one idle
// for IdleGrace since its last. When every address holds one at most,
// that is the oldest of all. Another address's fresh connection is never
// taken instead: if the one holding the most has only connections idle
// within their grace (it sends a request on each one it opens), a
// connection idle past its grace from anywhere goes, or the new connection
// waits for one, a second at most.
func (l *connLimiter) victimLocked(now time.Time) (net.Conn, time.Duration) {
	if l.most >= 2 {
		p := l.ranks[l.most].Front().value
		if t := oldestClosable(&p.fresh, &p.idle, now); t != nil {
			return t.conn, 0
		}
		if t := oldestClosable(nil, &l.idle, now); t != nil {
			return t.conn, 0
		}
	} else if t := oldestClosable(&l.fresh, &l.idle, now); t != nil {
		return t.conn, 0
	}
	if oldest := l.idle.Front(); oldest != nil {
		return nil, IdleGrace - now.Sub(oldest.value.since)
	}
	return nil, 0
}

// oldestClosable is the older of fresh's first connection and idle's
// first if it has been idle for IdleGrace, or nil. fresh may be nil.
func oldestClosable(fresh, idle *chain[*tracked], now time.Time) *tracked {
	var f, i *tracked
	if fresh != nil && fresh.Len() > 0 {
		f = fresh.Front().value
	}
	if e := idle.Front(); e != nil && now.Sub(e.value.since) >= IdleGrace {
		i = e.value
	}
	if i != nil && (f == nil || i.since.Before(f.since)) {
		return i
	}
	return f
}

// track is the server's ConnState: it follows which connections carry a
// request, and which have closed.
func (l *connLimiter) track(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.open[c]
	if !ok {
		return // closed by Accept to make room, or not one of ours
	}
	switch state {
	case http.StateActive:
		l.unwaitLocked(t)
	case http.StateIdle:
		if t.state == connBusy {
			l.waitLocked(t, connIdle, time.Now())
		}
	case http.StateClosed, http.StateHijacked:
		l.forgetLocked(c)
	}
}

// waitLocked counts t, which carries no request, as fresh or idle from
// now, in the lists and under its address. l.mu is held.
func (l *connLimiter) waitLocked(t *tracked, state connState, now time.Time) {
	p := l.peers[t.from]
	if p == nil {
		p = &peer{}
		l.peers[t.from] = p
	}
	t.state, t.since = state, now
	if state == connFresh {
		l.fresh.PushBack(&t.all)
		p.fresh.PushBack(&t.own)
	} else {
		l.idle.PushBack(&t.all)
		p.idle.PushBack(&t.own)
	}
	l.rerankLocked(p, p.waiting()-1)
}

// unwaitLocked stops counting t as waiting: a request is under way on it,
// or it is gone. l.mu is held.
func (l *connLimiter) unwaitLocked(t *tracked) {
	if t.state == connBusy {
		return
	}
	p := l.peers[t.from]
	if t.state == connFresh {
		l.fresh.Remove(&t.all)
		p.fresh.Remove(&t.own)
	} else {
		l.idle.Remove(&t.all)
		p.idle.Remove(&t.own)
	}
	t.state = connBusy
	l.rerankLocked(p, p.waiting()+1)
	if p.waiting() == 0 {
		delete(l.peers, t.from)
	}
}

// rerankLocked moves p, which held was connections waiting and now holds
// one more or one fewer, to its rank, and keeps l.most. l.mu is held.
func (l *connLimiter) rerankLocked(p *peer, was int) {
	if p.rank.on != nil {
		p.rank.on.Remove(&p.rank)
	}
	now := p.waiting()
	if now > 0 {
		for len(l.ranks) <= now {
			l.ranks = append(l.ranks, new(chain[*peer]))
		}
		p.rank.value = p
		l.ranks[now].PushBack(&p.rank)
	}
	switch {
	case now > l.most:
		l.most = now
	case was == l.most && l.ranks[was].Len() == 0:
		l.most = now // One fewer than the most, held by p itself if by anyone.
	}
}

// forgetLocked stops counting c. l.mu is held.
func (l *connLimiter) forgetLocked(c net.Conn) {
	if t := l.open[c]; t != nil {
		l.unwaitLocked(t)
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
