// Package httpconn makes GET requests to one origin over kept-alive
// HTTP/1.1 connections, in the caller's goroutine: the lean path of
// wxlogin's calls to WeChat (a login's code exchange, the session check).
// net/http's client hands each request between three goroutines (the
// caller's, and a connection's reader and writer), layers a context and a
// timer on it and builds its headers as maps; for one short GET to one
// host, that is most of a login's CPU (BENCHMARKS.md). Here a call takes
// an idle connection (or dials one, over TLS for https), writes its
// request from a reused buffer under one deadline, reads the answer with
// net/http's own parser, and puts the connection back.
package httpconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// Client is a pool of kept-alive connections to one origin. Its zero value
// is not usable: New makes one.
type Client struct {
	origin  string // scheme://host[:port], for errors
	addr    string // host:port to dial
	host    string // the Host header
	tls     *tls.Config
	maxIdle int
	dial    func(ctx context.Context, addr string) (net.Conn, error) // for tests; nil for TCP

	mu   sync.Mutex
	idle []*conn // newest last
}

// conn is one connection with its reader and its request buffer.
type conn struct {
	nc  net.Conn
	br  *bufio.Reader
	buf []byte
}

// New is a Client of the origin of base, an http or https URL, keeping at
// most maxIdle connections idle. For https, tlsConfig (nil for the
// defaults) checks the server, named as base names it.
func New(base string, maxIdle int, tlsConfig *tls.Config) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("httpconn: %q is not an http or https URL", u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	c := &Client{origin: u.Scheme + "://" + u.Host, addr: net.JoinHostPort(u.Hostname(), port), host: u.Host, maxIdle: maxIdle}
	if u.Scheme == "https" {
		if tlsConfig == nil {
			tlsConfig = &tls.Config{}
		}
		c.tls = tlsConfig.Clone()
		c.tls.ServerName, c.tls.NextProtos = u.Hostname(), []string{"http/1.1"}
	}
	return c, nil
}

// Error is a call that failed before its answer was read. Its message is
// its cause's: the caller names what it called, as it may show it (the
// target may hold secrets). A call that ran out of time is
// context.DeadlineExceeded too, as net/http's are.
type Error struct {
	Origin string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Is(target error) bool { return target == context.DeadlineExceeded && e.Timeout() }

// Timeout reports whether the call ran out of time, as net.Error has it.
func (e *Error) Timeout() bool {
	var ne net.Error
	return errors.Is(e.Err, context.DeadlineExceeded) || errors.As(e.Err, &ne) && ne.Timeout()
}

// Temporary is net.Error's, which is deprecated: false.
func (e *Error) Temporary() bool { return false }

// Get sends GET target (a path and its query) and returns the answer's
// status and body, of which it reads at most max bytes (the rest is
// dropped, with the connection). Everything, the dial included, must end by ctx's deadline and
// within timeout. A connection kept alive that the server closed while it
// was idle fails before any byte of an answer: the call is made again, at
// once, on a new connection, as net/http does for a GET.
func (c *Client) Get(ctx context.Context, target string, timeout time.Duration, max int64) (int, []byte, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		cn, reused, err := c.take(ctx, deadline)
		if err != nil {
			return 0, nil, &Error{c.origin, err}
		}
		status, body, keep, err := c.roundTrip(ctx, cn, target, deadline, max)
		if err != nil {
			cn.nc.Close()
			if reused && errors.Is(err, errNoAnswer) && ctx.Err() == nil {
				continue
			}
			if ctx.Err() != nil {
				err = ctx.Err() // the deadline set from ctx, or its cancellation, ended it
			}
			return 0, nil, &Error{c.origin, err}
		}
		if keep {
			c.put(cn)
		} else {
			cn.nc.Close()
		}
		return status, body, nil
	}
}

// errNoAnswer is a connection that ended before any byte of an answer.
var errNoAnswer = errors.New("the connection ended before an answer")

// longAgo is a deadline in the past: it stops a call at once.
var longAgo = time.Unix(1, 0)

// roundTrip writes the request on cn and reads its answer, by deadline or
// until ctx ends. keep reports whether cn may carry another.
func (c *Client) roundTrip(ctx context.Context, cn *conn, target string, deadline time.Time, max int64) (status int, body []byte, keep bool, err error) {
	cn.nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { cn.nc.SetDeadline(longAgo) })
	defer stop()
	cn.buf = append(cn.buf[:0], "GET "...)
	cn.buf = append(cn.buf, target...)
	cn.buf = append(cn.buf, " HTTP/1.1\r\nHost: "...)
	cn.buf = append(cn.buf, c.host...)
	cn.buf = append(cn.buf, "\r\nUser-Agent: wxlogin\r\n\r\n"...)
	if _, err := cn.nc.Write(cn.buf); err != nil {
		if ctx.Err() == nil && !isTimeout(err) {
			// A request not written whole was not acted on.
			return 0, nil, false, fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		return 0, nil, false, err
	}
	if _, err := cn.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return 0, nil, false, fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		return 0, nil, false, err
	}
	resp, err := http.ReadResponse(cn.br, nil)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 {
		resp, err = http.ReadResponse(cn.br, nil) // an informational answer (103 Early Hints) comes before the answer
	}
	if err != nil {
		return 0, nil, false, err
	}
	if resp.StatusCode < 100 {
		return 0, nil, false, fmt.Errorf("an answer with status %d", resp.StatusCode)
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return 0, nil, false, err
	}
	if int64(len(body)) > max {
		// The rest is dropped, with the connection, which is not at the
		// next answer's start.
		return resp.StatusCode, body[:max], false, nil
	}
	// The whole body is read: the connection is at the next answer's start.
	return resp.StatusCode, body, !resp.Close && resp.ProtoAtLeast(1, 1), nil
}

// isTimeout reports whether err is a deadline passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isReset reports whether err is the peer resetting the connection.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// take is an idle connection, newest first, or a new one.
func (c *Client) take(ctx context.Context, deadline time.Time) (cn *conn, reused bool, err error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		cn = c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cn, true, nil
	}
	c.mu.Unlock()
	dialCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var nc net.Conn
	switch {
	case c.dial != nil:
		nc, err = c.dial(dialCtx, c.addr)
	case c.tls != nil:
		nc, err = (&tls.Dialer{Config: c.tls}).DialContext(dialCtx, "tcp", c.addr)
	default:
		nc, err = (&net.Dialer{}).DialContext(dialCtx, "tcp", c.addr)
	}
	if err != nil {
		return nil, false, err
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 4096)}, false, nil
}

// put keeps cn for the next call, or closes it if maxIdle are kept.
func (c *Client) put(cn *conn) {
	cn.nc.SetDeadline(time.Time{})
	c.mu.Lock()
	if len(c.idle) < c.maxIdle {
		c.idle = append(c.idle, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		cn.nc.Close()
	}
}

// Close closes the idle connections.
func (c *Client) Close() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, cn := range idle {
		cn.nc.Close()
	}
}
