package webhook

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// conn is the sender's one kept-alive HTTP/1.1 connection to the
// receiver, over TLS for an https URL. A round's posts are written to it
// together and their answers read in order (pipelining): one write and a
// few reads for a round, where a post at a time would cost a round trip
// and its system calls each (BENCHMARKS.md). Only the Sender uses it, one
// round at a time.
type conn struct {
	target  *url.URL
	uri     string // target's request-URI, the same in every post
	addr    string // host:port to dial
	timeout time.Duration
	tls     *tls.Config // for https: the server's name is checked against it

	c      net.Conn
	raw    net.Conn // c's TCP connection, under its TLS for https
	br     *bufio.Reader
	room   *budget      // what br may still read for the answer being read
	buf    []byte       // the round's requests, reused
	body   []byte       // a post's body, reused
	ar     answerReader // reads the answers off br, in buffers it reuses
	reused bool         // c has carried a round before
	heard  bool         // the receiver sent bytes in the last round
}

// maxAnswer bounds what one answer may take of the connection, its status
// line and headers above all (its body is read up to maxBody): a receiver
// that sends an endless header fails its round, and costs no memory.
const (
	maxAnswer = 1 << 20
	maxBody   = 64 << 10
)

// budget is a reader that reads at most n bytes more from r: past them it
// fails, as a connection that ended. got counts every byte it read.
type budget struct {
	r   io.Reader
	n   int64
	got int64
}

var errTooLong = errors.New("the receiver's answer is too long")

func (b *budget) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errTooLong
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	b.got += int64(n)
	return n, err
}

func newConn(rawURL string, timeout time.Duration, tlsConfig *tls.Config) *conn {
	u, err := url.Parse(rawURL)
	if err != nil {
		u = &url.URL{} // config.Load checked it: never here
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443"}[u.Scheme]
		if port == "" {
			port = "80"
		}
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	tlsConfig = tlsConfig.Clone()
	tlsConfig.ServerName, tlsConfig.NextProtos = u.Hostname(), []string{"http/1.1"}
	return &conn{target: u, uri: u.RequestURI(), addr: net.JoinHostPort(u.Hostname(), port), timeout: timeout, tls: tlsConfig}
}

// errNotAnswered is the error of a post the receiver did not answer
// before the connection ended; errCutShort of one it did not answer after
// answering one before it on the same connection, which is posted again at
// once, on a new one.
var (
	errNotAnswered = errors.New("the receiver closed the connection before answering")
	errCutShort    = errors.New("the receiver closed the connection after answering a post before this one")
)

// post posts batch's events, signed, and returns, for each, nil if the
// receiver answered 2xx, or why not. A connection kept alive that the
// receiver closed while idle is redialled once, not counted as a failure.
func (c *conn) post(ctx context.Context, sign *signer, batch []*pending) []error {
	errs := c.attempt(ctx, sign, batch)
	if c.reusedAndDead(errs) {
		errs = c.attempt(ctx, sign, batch)
	}
	return errs
}

// reusedAndDead reports whether a round failed on a reused connection
// without a byte of an answer, other than by its deadline: the receiver
// closed it while it was idle, as net/http's client judges it too. A round
// the receiver answered, however oddly (a 101, headers past maxAnswer,
// bytes that are not HTTP), failed there: posted again at once on a new
// connection, a 2xx would hide that answer, so it waits as a refusal does.
// A round that ran out of time is not tried again: a round takes Timeout
// at most.
func (c *conn) reusedAndDead(errs []error) bool {
	var timeout net.Error
	return c.c == nil && c.reused && !c.heard && len(errs) > 0 && errs[0] != nil &&
		!(errors.As(errs[0], &timeout) && timeout.Timeout()) && !errors.Is(errs[0], context.Canceled)
}

// attempt makes one round: every post written, then every answer read.
func (c *conn) attempt(ctx context.Context, sign *signer, batch []*pending) []error {
	errs := make([]error, len(batch))
	var before int64 // what the connection had read when the round began
	fail := func(from int, err error) []error {
		c.heard = c.room != nil && c.room.got > before
		c.close()
		for i := from; i < len(errs); i++ {
			errs[i] = err
		}
		return errs
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if c.c != nil && c.unsolicited() {
		c.close() // bytes no post asked for: no answer on it can be trusted
	}
	c.reused, c.heard = c.c != nil, false
	if c.c == nil {
		if err := c.dial(ctx, deadline); err != nil {
			return fail(0, err)
		}
	}
	before = c.room.got
	if err := c.c.SetDeadline(deadline); err != nil {
		return fail(0, err)
	}
	// A round ends when ctx does, as at its deadline.
	nc := c.c
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.buf = c.buf[:0]
	for _, p := range batch {
		c.buf = c.appendRequest(c.buf, sign, p)
	}
	if _, err := c.c.Write(c.buf); err != nil {
		return fail(0, err)
	}
	for i := range batch {
		a, err := c.answer()
		if err != nil {
			switch {
			case i > 0:
				err = errCutShort
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				err = errNotAnswered
			}
			return fail(i, err)
		}
		c.heard = true
		n, err := c.discard(a)
		if a.code < 200 || a.code > 299 {
			errs[i] = &statusError{a.status}
		}
		if err != nil || n == maxBody || a.close || framedWithoutBody(a) {
			if i+1 < len(batch) || err != nil {
				return fail(i+1, errCutShort)
			}
			c.close()
		}
	}
	if c.c != nil && c.br.Buffered() > 0 {
		c.close() // more than the posts' answers: the next round's are not to be read after it
	}
	return errs
}

// answer reads the final answer to the next post, past any interim (1xx)
// answers before it, as RFC 9110 §15.2 has a client do; 101 (a switch of
// protocols no post asked for) is not an answer. An answer, interim ones
// and headers included, may take up to maxAnswer bytes, and its body
// maxBody more. Answers are read as http.ReadResponse reads them
// (answerReader), without its allocations.
func (c *conn) answer() (answer, error) {
	c.room.n = maxAnswer
	for {
		a, err := c.ar.read(c.br)
		if err != nil {
			return answer{}, err
		}
		if a.code >= 200 || a.code < 100 {
			c.room.n += maxBody
			return a, nil
		}
		if a.code == http.StatusSwitchingProtocols || framedWithoutBody(a) {
			return answer{}, fmt.Errorf("the receiver answered %s", a.status)
		}
	}
}

// discard reads a's body and drops it, so that the next answer can be
// read, and returns how much of it it read: maxBody at most, and a body
// that long ends the connection instead.
func (c *conn) discard(a answer) (int64, error) {
	return c.ar.discard(c.br, a)
}

// unsolicited reports whether the receiver sent bytes, or closed the
// connection, while it was idle between rounds: net/http's client drops
// such a connection too. It asks the socket (idleBytes), or, where it
// cannot, reads for idleCheck: a read whose deadline has passed reads
// nothing, even what has arrived.
func (c *conn) unsolicited() bool {
	if c.br.Buffered() > 0 {
		return true
	}
	// The last round's deadline may have passed: a read after it, even a
	// peek at the socket, would fail at once.
	if err := c.c.SetReadDeadline(time.Time{}); err != nil {
		return true
	}
	if waiting, ok := idleBytes(c.raw); ok {
		return waiting
	}
	c.room.n = maxAnswer
	if err := c.c.SetReadDeadline(time.Now().Add(idleCheck)); err != nil {
		return true
	}
	_, err := c.br.Peek(1)
	var timeout net.Error
	return !(errors.As(err, &timeout) && timeout.Timeout())
}

// idleCheck is how long a kept-alive connection is read, before a round,
// for bytes the receiver sent while it was idle.
const idleCheck = time.Millisecond

// dial connects to the receiver, with TLS for https.
func (c *conn) dial(ctx context.Context, deadline time.Time) error {
	dialer := net.Dialer{Deadline: deadline}
	nc, err := dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	c.raw = nc
	if c.target.Scheme == "https" {
		tc := tls.Client(nc, c.tls)
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return err
		}
		nc = tc
	}
	c.room = &budget{r: nc}
	c.c, c.br = nc, bufio.NewReaderSize(c.room, 4096)
	return nil
}

// appendRequest appends p's post, signed, to buf.
func (c *conn) appendRequest(buf []byte, sign *signer, p *pending) []byte {
	c.body = p.event.Append(c.body[:0])
	body := c.body
	now := time.Now()
	buf = append(buf, "POST "...)
	buf = append(buf, c.uri...)
	buf = append(buf, " HTTP/1.1\r\nHost: "...)
	buf = append(buf, c.target.Host...)
	buf = append(buf, "\r\nUser-Agent: wxlogin-webhook\r\nContent-Type: application/json\r\nContent-Length: "...)
	buf = strconv.AppendInt(buf, int64(len(body)), 10)
	buf = append(buf, "\r\nwebhook-id: "...)
	buf = append(buf, p.event.ID...)
	buf = append(buf, "\r\nwebhook-timestamp: "...)
	buf = strconv.AppendInt(buf, now.Unix(), 10)
	buf = append(buf, "\r\nwebhook-signature: "...)
	buf = sign.appendSignature(buf, p.event.ID, now, body)
	buf = append(buf, "\r\n\r\n"...)
	return append(buf, body...)
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c, c.raw, c.br, c.room = nil, nil, nil, nil
		// An answer's long lines may have grown ar's buffers up to
		// maxAnswer: they go with the connection.
		c.ar = answerReader{}
	}
}

// statusError is an answer other than 2xx.
type statusError struct{ status string }

func (e *statusError) Error() string { return fmt.Sprintf("the receiver answered %s", e.status) }

func isStatus(err error) bool {
	var se *statusError
	return errors.As(err, &se)
}

func randomHolder() string {
	b := make([]byte, 8)
	rand.Read(b) // Never fails: crypto/rand.Read crashes the program rather than return short.
	return hex.EncodeToString(b)
}
