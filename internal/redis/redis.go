// Package redis is a small Redis client on the standard library: RESP2
// over TCP or TLS, a bounded pool of connections per server that carries
// concurrent calls together, each call bounded by its context and by its
// request's budget, pipelines for routes that need several commands, AUTH
// with an ACL user, SELECT, Lua scripts, and Redis Cluster's routing
// (cluster.go). The protocol is Redis's own spec
// (https://redis.io/docs/latest/develop/reference/protocol-spec/).
package redis

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Error is an error reply of Redis ("-ERR …", "-MOVED …"): the
// command was refused, the connection is fine.
type Error string

// Error is the reply, as Redis wrote it, after "redis: ".
func (e Error) Error() string { return "redis: " + string(e) }

// Limits on what a reply may hold. Redis's own limit on a string is 512 MB;
// wxlogin stores small values, so anything much bigger is a broken or
// hostile server, refused before it is allocated.
const (
	maxBulk  = 16 << 20
	maxArray = 1 << 20
	maxDepth = 8 // CLUSTER SLOTS nests 3 deep
)

// appendCommand appends args as a RESP array of bulk strings, the
// form of every command a client sends.
func appendCommand(buf []byte, args []string) []byte {
	buf = append(buf, '*')
	buf = strconv.AppendInt(buf, int64(len(args)), 10)
	buf = append(buf, '\r', '\n')
	for _, a := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(a)), 10)
		buf = append(buf, '\r', '\n')
		buf = append(buf, a...)
		buf = append(buf, '\r', '\n')
	}
	return buf
}

// readReply reads one reply: a string (simple or bulk), an int64, a
// []any of replies, nil for a nil bulk string or array, or an Error.
// Any other error means the connection can no longer be used.
func readReply(r *bufio.Reader) (any, error) {
	return readValue(r, 0)
}

// readValue reads a reply nested depth arrays deep.
func readValue(r *bufio.Reader, depth int) (any, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, errors.New("empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return string(body), nil
	case '-':
		return Error(body), nil
	case ':':
		n, err := strconv.ParseInt(string(body), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad integer reply %q", body)
		}
		return n, nil
	case '$':
		n, err := parseLength(body, maxBulk)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errors.New("bulk string not ended by CRLF")
		}
		return string(buf[:n]), nil
	case '*':
		if depth >= maxDepth {
			return nil, errors.New("reply nested too deep")
		}
		n, err := parseLength(body, maxArray)
		if err != nil || n < 0 {
			return nil, err
		}
		items := make([]any, 0, min(n, 1024)) // a claimed length is not memory to reserve
		for range n {
			v, err := readValue(r, depth+1)
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		return items, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", line[0])
}

// readLine reads a line ended by CRLF, without it.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("reply line too long")
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errors.New("reply line not ended by CRLF")
	}
	return line[:len(line)-2], nil
}

// parseLength reads the length of a bulk string or an array: -1 is nil
// (returned as -1 with no error), anything else must be 0 to limit.
func parseLength(b []byte, limit int) (int, error) {
	n, err := strconv.Atoi(string(b))
	switch {
	case err != nil || n < -1:
		return 0, fmt.Errorf("bad length %q", b)
	case n > limit:
		return 0, fmt.Errorf("length %d over the limit of %d", n, limit)
	}
	return n, nil
}

// Config is how to reach Redis, as a URL says it (ParseURL).
type Config struct {
	Addrs    []string    // host:port; several are seeds of a cluster
	User     string      // an ACL user, or "" for the default one
	Password string      // "" for none: no AUTH
	DB       int         // the database SELECTed; 0 in a cluster
	TLS      *tls.Config // nil for plain TCP
	Cluster  bool        // Addrs are seeds of a Redis Cluster
	PoolSize int         // connections to each server at most
	// Timeout bounds a dial, and each call, within its context; and a
	// request's calls, in all (WithBudgets).
	Timeout time.Duration
}

// redactedURL is u without its password, for logs and errors.
func redactedURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), "REDACTED")
		}
	}
	return c.String()
}

// ParseURL reads redis://[user[:password]@]host:port[/db][?options]
// (rediss:// for TLS). Options: cluster=true (the hosts are seeds of a
// Redis Cluster), addr=host:port (another seed, repeatable), pool=N,
// timeout=2s. Where a password may come from (not a flag, which anyone
// can see in ps) is for the caller to say.
func ParseURL(raw string) (Config, error) {
	cfg := Config{PoolSize: 8, Timeout: 2 * time.Second}
	u, err := url.Parse(raw)
	if err != nil {
		return cfg, errors.New("not a URL") // url's own error would repeat the password
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		cfg.TLS = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	default:
		return cfg, fmt.Errorf("%s: the scheme must be redis:// or rediss://", redactedURL(u))
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	if u.Host != "" {
		cfg.Addrs = append(cfg.Addrs, hostPort(u.Host))
	}
	q := u.Query()
	for _, a := range q["addr"] {
		cfg.Addrs = append(cfg.Addrs, hostPort(a))
	}
	if len(cfg.Addrs) == 0 {
		return cfg, fmt.Errorf("%s: no host", redactedURL(u))
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if cfg.DB, err = strconv.Atoi(db); err != nil || cfg.DB < 0 {
			return cfg, fmt.Errorf("%s: the path must be a database number", redactedURL(u))
		}
	}
	if v := q.Get("cluster"); v != "" {
		if cfg.Cluster, err = strconv.ParseBool(v); err != nil {
			return cfg, fmt.Errorf("%s: cluster=%q is not a boolean", redactedURL(u), v)
		}
	}
	if cfg.Cluster && cfg.DB != 0 {
		return cfg, fmt.Errorf("%s: a Redis Cluster has database 0 only", redactedURL(u))
	}
	if v := q.Get("pool"); v != "" {
		if cfg.PoolSize, err = strconv.Atoi(v); err != nil || cfg.PoolSize < 1 {
			return cfg, fmt.Errorf("%s: pool=%q is not a positive number", redactedURL(u), v)
		}
	}
	if v := q.Get("timeout"); v != "" {
		if cfg.Timeout, err = time.ParseDuration(v); err != nil || cfg.Timeout <= 0 {
			return cfg, fmt.Errorf("%s: timeout=%q is not a positive duration", redactedURL(u), v)
		}
	}
	return cfg, nil
}

// hostPort adds Redis's port to a host that has none.
func hostPort(host string) string {
	if _, _, err := net.SplitHostPort(host); err != nil {
		return net.JoinHostPort(strings.Trim(host, "[]"), "6379")
	}
	return host
}

// conn is one connection to a Redis server.
type conn struct {
	net  net.Conn
	r    *bufio.Reader
	buf  []byte // the commands being written, reused
	dead bool   // an I/O error happened: never reuse
}

// roundTrip writes cmds and reads one reply for each, within ctx and
// within the pool's timeout, whichever ends first: a Redis that hangs
// costs a request the timeout, not the request's whole bound. A cancelled
// context interrupts the I/O at once. An error is of the connection, which
// is then dead; a command's own refusal is an Error among the replies.
func (c *conn) roundTrip(ctx context.Context, timeout time.Duration, cmds [][]string) ([]any, error) {
	deadline := time.Now().Add(timeout)
	ctxDeadline, hasDeadline := ctx.Deadline()
	hasDeadline = hasDeadline && ctxDeadline.Before(deadline) // the context's is the one that binds
	if hasDeadline {
		deadline = ctxDeadline
	}
	c.net.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.net.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			// The context ended: its deadline in the past may land after
			// this call, on the next user of the connection.
			c.dead = true
		}
	}()

	c.buf = c.buf[:0]
	for _, cmd := range cmds {
		c.buf = appendCommand(c.buf, cmd)
	}
	replies := make([]any, len(cmds))
	_, err := c.net.Write(c.buf)
	for i := 0; err == nil && i < len(cmds); i++ {
		replies[i], err = readReply(c.r)
	}
	if cap(c.buf) > 64<<10 {
		c.buf = nil // not kept after a rare big pipeline
	}
	if err != nil {
		c.dead = true
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if hasDeadline && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(deadline) {
			return nil, context.DeadlineExceeded // the context's own deadline, a moment before it says so
		}
		return nil, err
	}
	return replies, nil
}

// pool is a bounded pool of connections to one Redis server, which
// carries the calls of concurrent callers together: while every connection
// is busy, new calls wait in a queue, and the first connection free sends
// the whole queue as one pipeline, one write and its replies. Under load
// that is what a round trip costs, in system calls on both sides and in
// Redis's fsyncs, divided by the calls it carries; alone, a call is sent at
// once, as it would be without the queue.
type pool struct {
	addr string
	cfg  Config
	// slots holds a token for each connection that may be open: taking one
	// is the right to dial or to use an idle one; it bounds the server's
	// connections, and makes callers wait, within their context, beyond it.
	slots chan struct{}

	mu      sync.Mutex // guards idle, closed, sending, queue and later
	idle    []*conn
	closed  bool
	sending int        // pipelines on their way, at most cfg.poolSize
	queue   []*call    // calls for the next pipeline, while sending is at the bound
	later   [][]string // commands for the next pipeline, whose replies nobody waits for (Send)

	roundTrips atomic.Int64 // calls made, each a round trip for its caller
	writes     atomic.Int64 // pipelines written, each carrying one call or more
}

// call is one caller's commands, as the pool carries them.
type call struct {
	cmds    [][]string
	start   time.Time     // when it was made: its replies are due within the timeout
	done    chan struct{} // closed once replies or err is set, for a call that waited
	replies []any
	err     error
}

// maxCarried bounds the calls one pipeline carries.
const maxCarried = 128

// newPool is the pool of the server at addr, with no connection yet.
func newPool(addr string, cfg Config) *pool {
	p := &pool{addr: addr, cfg: cfg, slots: make(chan struct{}, cfg.PoolSize)}
	for range cfg.PoolSize {
		p.slots <- struct{}{}
	}
	return p
}

// get returns a connection, idle or new, waiting within ctx for room.
func (p *pool) get(ctx context.Context) (*conn, error) {
	select {
	case <-p.slots:
	case <-ctx.Done():
		return nil, fmt.Errorf("redis %s: waiting for a connection: %w", p.addr, ctx.Err())
	}
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		p.slots <- struct{}{}
		return nil, fmt.Errorf("%w: %w", errDial, err)
	}
	return c, nil
}

// put gives c back: kept for the next call, or closed if it is dead.
func (p *pool) put(c *conn) {
	p.mu.Lock()
	if c.dead || p.closed {
		c.net.Close()
	} else {
		p.idle = append(p.idle, c)
	}
	p.mu.Unlock()
	p.slots <- struct{}{}
}

// dial opens a connection and readies it: TLS, AUTH, SELECT.
func (p *pool) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", p.addr, err)
	}
	if p.cfg.TLS != nil {
		tc := tls.Client(nc, p.cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("redis %s: TLS: %w", p.addr, err)
		}
		nc = tc
	}
	c := &conn{net: nc, r: bufio.NewReaderSize(nc, 16<<10)}
	var setup [][]string
	switch {
	case p.cfg.Password != "" && p.cfg.User != "":
		setup = append(setup, []string{"AUTH", p.cfg.User, p.cfg.Password})
	case p.cfg.Password != "":
		setup = append(setup, []string{"AUTH", p.cfg.Password})
	}
	if p.cfg.DB != 0 {
		setup = append(setup, []string{"SELECT", strconv.Itoa(p.cfg.DB)})
	}
	if len(setup) > 0 {
		replies, err := c.roundTrip(ctx, p.cfg.Timeout, setup)
		if err == nil {
			for i, r := range replies {
				if e, refused := r.(Error); refused {
					err = fmt.Errorf("redis %s: %s: %w", p.addr, setup[i][0], e) // AUTH's reply names no password
					break
				}
			}
		}
		if err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

// do sends cmds to the server as one pipeline and returns their replies:
// at once on a connection of its own if one is free, or else with the
// calls queued beside it, by the next connection free.
func (p *pool) do(ctx context.Context, cmds [][]string) ([]any, error) {
	p.roundTrips.Add(1)
	return p.run(ctx, cmds)
}

// run is do, uncounted: the pipeline carries the commands sent for later
// (sendLater) too.
func (p *pool) run(ctx context.Context, cmds [][]string) ([]any, error) {
	c := &call{cmds: cmds, start: time.Now()}
	p.mu.Lock()
	if p.sending < p.cfg.PoolSize {
		p.sending++
		later := p.later
		p.later = nil
		p.mu.Unlock()
		p.send(ctx, []*call{c}, later)
		p.carryOn()
		return c.replies, c.err
	}
	c.done = make(chan struct{})
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	select {
	case <-c.done:
		return c.replies, c.err
	case <-ctx.Done():
		select {
		case <-c.done: // answered at the same moment: the answer counts
			return c.replies, c.err
		default:
		}
	}
	p.mu.Lock()
	i := slices.Index(p.queue, c)
	if i >= 0 {
		p.queue = slices.Delete(p.queue, i, i+1)
	}
	p.mu.Unlock()
	if i >= 0 {
		return nil, fmt.Errorf("redis %s: waiting for a connection: %w", p.addr, ctx.Err())
	}
	// On its way: its commands may still run.
	return nil, fmt.Errorf("redis %s: waiting for a reply: %w", p.addr, ctx.Err())
}

// carryOn is called by a pipeline's sender once it is back: the calls
// queued meanwhile go next, carried by a goroutine of their own, so that
// the caller who sent it is not kept waiting for others' replies.
func (p *pool) carryOn() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		p.sending--
		return
	}
	go p.carry()
}

// carry sends the queue, as often as it fills while a pipeline is on its
// way, until it is empty.
func (p *pool) carry() {
	for {
		p.mu.Lock()
		n := min(len(p.queue), maxCarried)
		if n == 0 {
			p.sending--
			p.mu.Unlock()
			return
		}
		calls := slices.Clone(p.queue[:n])
		p.queue = slices.Delete(p.queue, 0, n)
		later := p.later
		p.later = nil
		p.mu.Unlock()
		// A call that waited out its timeout in the queue fails without
		// being sent (its caller has given up, or gives up now); sending it
		// would only spend a connection on a deadline already past.
		now := time.Now()
		live := calls[:0:0]
		for _, c := range calls {
			if now.Before(c.start.Add(p.cfg.Timeout)) {
				live = append(live, c)
				continue
			}
			c.err = fmt.Errorf("redis %s: waiting for a connection: %w", p.addr, os.ErrDeadlineExceeded)
			close(c.done)
		}
		// No caller's context ends the pipeline (each caller stops waiting
		// at its own); the timeout of its earliest call bounds it, so that
		// no call waits longer than its own: the calls before it in the
		// queue, and in the pipelines on their way, were made earlier.
		deadline := now.Add(p.cfg.Timeout)
		if len(live) > 0 {
			deadline = live[0].start.Add(p.cfg.Timeout)
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		p.send(ctx, live, later)
		cancel()
		for _, c := range live {
			close(c.done)
		}
	}
}

// send writes the commands sent for later, then those of calls, as one
// pipeline, and gives each call its replies, or the error that ended the
// pipeline; the replies to later's are dropped.
func (p *pool) send(ctx context.Context, calls []*call, later [][]string) {
	fail := func(err error) {
		for _, c := range calls {
			c.err = err
		}
	}
	cmds := later
	if len(later) == 0 && len(calls) == 1 {
		cmds = calls[0].cmds
	} else {
		for _, call := range calls {
			cmds = append(cmds, call.cmds...)
		}
	}
	if len(cmds) == 0 {
		return
	}
	c, err := p.get(ctx)
	if err != nil {
		fail(err)
		return
	}
	p.writes.Add(1)
	replies, err := c.roundTrip(ctx, p.cfg.Timeout, cmds)
	p.put(c)
	if err != nil {
		fail(fmt.Errorf("redis %s: %w", p.addr, err))
		return
	}
	replies = replies[len(later):]
	for _, call := range calls {
		call.replies, replies = replies[:len(call.cmds):len(call.cmds)], replies[len(call.cmds):]
	}
}

// sendLaterWithin is how long a command sent for later waits for a call
// to go with before it goes on its own.
var sendLaterWithin = 2 * time.Millisecond

// maxLater bounds the commands waiting to be sent for later; more are
// dropped, as their failure would be.
const maxLater = 1024

// sendLater queues cmd for the next pipeline to the server, whose reply
// nobody waits for (Client.Send); if none goes within sendLaterWithin,
// cmd goes on its own.
func (p *pool) sendLater(cmd []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.later) >= maxLater {
		return
	}
	p.later = append(p.later, cmd)
	if len(p.later) == 1 {
		time.AfterFunc(sendLaterWithin, p.flushLater)
	}
}

// flushLater sends the commands sent for later that no call took along,
// in a pipeline of their own.
func (p *pool) flushLater() {
	p.mu.Lock()
	waiting := len(p.later) > 0 && !p.closed
	p.mu.Unlock()
	if waiting {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
		defer cancel()
		p.run(ctx, nil)
	}
}

// close closes the idle connections, and those in use as they are given
// back; the commands sent for later and not sent yet are dropped.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.later = nil
	for _, c := range p.idle {
		c.net.Close()
	}
	p.idle = nil
}

// errDial marks a failure to reach a server, before any command was
// sent: a call that met it may be tried on another server.
var errDial = errors.New("cannot connect")

// Client runs commands on one Redis server, or on a Redis Cluster
// (cluster.go). It is safe for concurrent use.
type Client struct {
	single  *pool    // nil for a cluster
	cluster *cluster // nil for one server
}

// NewClient is a client of the server, or the cluster, cfg names. It
// connects on first use.
func NewClient(cfg Config) *Client {
	if cfg.Cluster {
		return &Client{cluster: newCluster(cfg)}
	}
	return &Client{single: newPool(cfg.Addrs[0], cfg)}
}

// Do runs one command and returns its reply; a refusal (an Error) is
// returned as the error.
func (c *Client) Do(ctx context.Context, args ...string) (any, error) {
	replies, err := c.Pipeline(ctx, [][]string{args})
	if err != nil {
		return nil, err
	}
	if e, refused := replies[0].(Error); refused {
		return nil, e
	}
	return replies[0], nil
}

// Send sends cmd to the server of its key with the next call to that
// server, or on its own within a few milliseconds if none comes, and
// returns at once: for a write that nobody waits for, whose reply, refusal
// or failure is dropped (an exchange's answer left for other instances).
// It costs no round trip of its own where other calls follow it. In a
// cluster it goes where the map last said its key's slot is, unredirected.
func (c *Client) Send(cmd ...string) {
	if c.cluster == nil {
		c.single.sendLater(cmd)
		return
	}
	c.cluster.sendLater(cmd)
}

// Pipeline sends cmds at once and returns a reply for each, refusals among
// them. In a cluster every key of cmds must hash to one slot: they go to
// the server of the first command's key, and, redirected, are sent again
// whole, so a pipeline holds reads, or writes that may be repeated.
func (c *Client) Pipeline(ctx context.Context, cmds [][]string) ([]any, error) {
	ctx, spent, err := spendBudget(ctx)
	if err != nil {
		return nil, err
	}
	defer spent()
	if c.cluster != nil {
		return c.cluster.pipeline(ctx, commandKey(cmds[0]), cmds)
	}
	return c.single.do(ctx, cmds)
}

// budget is the time one request may wait for Redis in all its
// calls: the Redis URL's timeout, which bounds each call too. A login
// makes several one after another (the code's exchange marked; a new
// user's id; the user's record and the token), and a Redis that stops
// answering between two of them would otherwise cost it the timeout at
// each call that is still to come. The time between calls (WeChat's
// answer, another instance's exchange awaited) is not Redis's, and is not
// counted.
type budget struct {
	mu   sync.Mutex // guards left
	left time.Duration
}

// budgetKey is the context key of a request's budget.
type budgetKey struct{}

// errBudgetSpent is a call's failure when its request has waited for
// Redis as long as it may: it is not sent.
var errBudgetSpent = fmt.Errorf("redis: the request has waited its bound for Redis: %w", context.DeadlineExceeded)

// WithBudgets gives each request d to wait for Redis in all
// (budget). The budget is a value of the request's context, so that
// the calls made for it with a context that its end does not cancel are
// bounded by it as well.
func WithBudgets(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), budgetKey{}, &budget{left: d})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// spendBudget bounds a call made with ctx by what is left of its
// request's budget, if it has one: it returns the call's context, and
// spent, which takes the time the call took from the budget once it is
// done; or errBudgetSpent, and the call is not made.
func spendBudget(ctx context.Context) (_ context.Context, spent func(), _ error) {
	b, _ := ctx.Value(budgetKey{}).(*budget)
	if b == nil {
		return ctx, func() {}, nil
	}
	b.mu.Lock()
	left := b.left
	b.mu.Unlock()
	if left <= 0 {
		return nil, nil, errBudgetSpent
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, left)
	return ctx, func() {
		cancel()
		b.mu.Lock()
		b.left -= time.Since(start)
		b.mu.Unlock()
	}, nil
}

// OnEachServer sends cmds to every server (every master of a cluster) and
// returns the replies of each, by address.
func (c *Client) OnEachServer(ctx context.Context, cmds [][]string) (map[string][]any, error) {
	ctx, spent, err := spendBudget(ctx)
	if err != nil {
		return nil, err
	}
	defer spent()
	pools, err := c.servers(ctx)
	if err != nil {
		return nil, err
	}
	all := map[string][]any{}
	for _, p := range pools {
		replies, err := p.do(ctx, cmds)
		if err != nil {
			return nil, err
		}
		all[p.addr] = replies
	}
	return all, nil
}

// Cluster reports whether the client is a Redis Cluster's, whose scripts
// each touch the keys of one hash slot, or else one server's, whose
// scripts may touch any keys they are given.
func (c *Client) Cluster() bool { return c.cluster != nil }

// RoundTrips is how many calls the client has made, to any server: each
// is a round trip for its caller, whether it went alone or with others.
func (c *Client) RoundTrips() int64 {
	if c.cluster == nil {
		return c.single.roundTrips.Load()
	}
	c.cluster.mu.Lock()
	defer c.cluster.mu.Unlock()
	var n int64
	for _, p := range c.cluster.pools {
		n += p.roundTrips.Load()
	}
	return n
}

// servers are the pools of every server: the one, or each master of a
// cluster.
func (c *Client) servers(ctx context.Context) ([]*pool, error) {
	if c.cluster != nil {
		return c.cluster.masters(ctx)
	}
	return []*pool{c.single}, nil
}

// Scan lists the keys that match pattern on every server, with SCAN: a
// key that exists throughout is listed at least once.
func (c *Client) Scan(ctx context.Context, pattern string) ([]string, error) {
	pools, err := c.servers(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, p := range pools {
		cursor := "0"
		for {
			replies, err := p.do(ctx, [][]string{{"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}})
			if err != nil {
				return nil, err
			}
			page, _ := replies[0].([]any)
			if len(page) != 2 {
				return nil, fmt.Errorf("redis %s: SCAN answered %v", p.addr, replies[0])
			}
			cursor, _ = page[0].(string)
			found, _ := page[1].([]any)
			for _, k := range found {
				if key, ok := k.(string); ok {
					keys = append(keys, key)
				}
			}
			if cursor == "0" || cursor == "" {
				break
			}
		}
	}
	return keys, nil
}

// Close closes every connection.
func (c *Client) Close() {
	if c.cluster != nil {
		c.cluster.close()
		return
	}
	c.single.close()
}

// commandKey is the key a command is routed by: its first argument,
// or for a script the first of its keys; "" for a command with no key
// (PING, INFO, CONFIG …), which any server may answer.
func commandKey(cmd []string) string {
	switch strings.ToUpper(cmd[0]) {
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL":
		if len(cmd) > 3 && cmd[2] != "0" {
			return cmd[3]
		}
		return ""
	case "PING", "INFO", "CONFIG", "CLUSTER", "SCRIPT", "WAIT", "DBSIZE", "FLUSHALL", "TIME", "HELLO", "ACL":
		return ""
	}
	if len(cmd) > 1 {
		return cmd[1]
	}
	return ""
}

// Script is a Lua script run with EVALSHA, sent whole once a server
// says it does not have it (NOSCRIPT: after a restart or a failover).
type Script struct {
	src, sha string
}

// NewScript is the script of source src.
func NewScript(src string) Script {
	sum := sha1.Sum([]byte(src))
	return Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Run runs the script with keys and args, and returns its reply.
func (s Script) Run(ctx context.Context, c *Client, keys []string, args ...string) (any, error) {
	cmd := append([]string{"EVALSHA", s.sha, strconv.Itoa(len(keys))}, keys...)
	cmd = append(cmd, args...)
	v, err := c.Do(ctx, cmd...)
	var e Error
	if errors.As(err, &e) && strings.HasPrefix(string(e), "NOSCRIPT") {
		cmd[0], cmd[1] = "EVAL", s.src
		v, err = c.Do(ctx, cmd...)
	}
	return v, err
}

// RunEach runs the script once for each of calls, each a list of its
// keys then its args (keys counts the keys of each), all at once as
// PipelineEach sends groups, and returns their replies, refusals among
// them, in order; or the first failure to reach Redis. A call its server
// answers NOSCRIPT goes again with the script whole.
func (s Script) RunEach(ctx context.Context, c *Client, keys int, calls [][]string) ([]any, error) {
	send := func(name, script string, at []int) ([]any, error) {
		groups := make([][][]string, len(at))
		for j, i := range at {
			groups[j] = [][]string{append([]string{name, script, strconv.Itoa(keys)}, calls[i]...)}
		}
		replies, err := c.PipelineEach(ctx, groups)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(at))
		for j, r := range replies {
			out[j] = r[0]
		}
		return out, nil
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	replies, err := send("EVALSHA", s.sha, all)
	if err != nil {
		return nil, err
	}
	var again []int
	for i, r := range replies {
		if e, ok := r.(Error); ok && strings.HasPrefix(string(e), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return replies, nil
	}
	whole, err := send("EVAL", s.src, again)
	if err != nil {
		return nil, err
	}
	for j, i := range again {
		replies[i] = whole[j]
	}
	return replies, nil
}

// PipelineEach sends each of groups, the commands of one hash slot, and
// returns their replies, refusals among them, by group; or the first
// failure to reach Redis. On one server they go as one pipeline, whatever
// their slots; in a cluster, where a pipeline goes to one slot's server,
// each group goes as one of its own, all at once, and the pools carry
// together those that meet on a busy server.
func (c *Client) PipelineEach(ctx context.Context, groups [][][]string) ([][]any, error) {
	replies := make([][]any, len(groups))
	if c.cluster != nil {
		errs := make([]error, len(groups))
		var wg sync.WaitGroup
		for i, cmds := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				replies[i], errs[i] = c.Pipeline(ctx, cmds)
			}()
		}
		wg.Wait()
		return replies, errors.Join(errs...)
	}
	var all [][]string
	for _, cmds := range groups {
		all = append(all, cmds...)
	}
	if len(all) == 0 {
		return replies, nil
	}
	flat, err := c.Pipeline(ctx, all)
	if err != nil {
		return nil, err
	}
	for i, cmds := range groups {
		replies[i], flat = flat[:len(cmds):len(cmds)], flat[len(cmds):]
	}
	return replies, nil
}
