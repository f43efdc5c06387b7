// Package accesslog is the access log: one line per request, written by a
// goroutine of its own (Writer), and the boundary every request passes on
// its way in (a body cap) and out (panics, and the mux's own answers, put
// in the server's envelope). It knows nothing of that envelope: the server
// hands it its error writer, who a request's client is, and what to do
// with each answer (Options).
package accesslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// NewLogger is wxlogin's logger on out: text (logfmt) or JSON lines, for
// a log shipper to read, from level up. In text, Handler writes its lines
// itself (textHandler).
func NewLogger(out io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	locked := &lockedWriter{w: out}
	return slog.New(&textHandler{Handler: slog.NewTextHandler(locked, opts), out: locked, level: level})
}

// textHandler is slog's TextHandler, which writes every line but the
// access log's: Handler writes those itself (appendText), byte for byte
// as the TextHandler would (FuzzAccessLine), at a fraction of the cost.
// A logger derived from it (With, WithGroup) is a plain TextHandler's.
type textHandler struct {
	slog.Handler
	out   *lockedWriter
	level slog.Level
}

// lockedWriter serializes the writes of a textHandler's two writers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// line is one request's access line.
type line struct {
	at                          time.Time
	level                       slog.Level
	method, path, route, remote string
	status                      int
	duration                    time.Duration
	proxy, err                  string // "" for none
}

// write writes l with log: with a textHandler's writer, or else through
// slog, with the same attributes.
func (l *line) write(ctx context.Context, log *slog.Logger) {
	if th, ok := log.Handler().(*textHandler); ok {
		if l.level < th.level {
			return
		}
		buf := lineBuffers.Get().(*[]byte)
		*buf = l.appendText((*buf)[:0])
		th.out.Write(*buf) // There is nowhere to report a failure to write the log.
		lineBuffers.Put(buf)
		return
	}
	var room [8]slog.Attr // every attribute below, without an allocation
	attrs := append(room[:0],
		slog.String("method", l.method),
		slog.String("path", l.path),
		slog.String("route", l.route),
		slog.Int("status", l.status),
		slog.Duration("duration", l.duration),
		slog.String("remote", l.remote),
	)
	if l.proxy != "" {
		attrs = append(attrs, slog.String("proxy", l.proxy))
	}
	if l.err != "" {
		attrs = append(attrs, slog.String("err", l.err))
	}
	log.LogAttrs(ctx, l.level, "request", attrs...)
}

// lineBuffers are the buffers of the lines a textHandler's writer writes.
var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// appendText appends l as slog's TextHandler writes it, and a newline.
func (l *line) appendText(buf []byte) []byte {
	buf = appendMillis(append(buf, "time="...), l.at)
	buf = append(append(buf, " level="...), l.level.String()...)
	buf = append(buf, " msg=request"...)
	buf = appendTextValue(buf, " method=", l.method)
	buf = appendTextValue(buf, " path=", l.path)
	buf = appendTextValue(buf, " route=", l.route)
	buf = strconv.AppendInt(append(buf, " status="...), int64(l.status), 10)
	buf = append(append(buf, " duration="...), l.duration.String()...)
	buf = appendTextValue(buf, " remote=", l.remote)
	if l.proxy != "" {
		buf = appendTextValue(buf, " proxy=", l.proxy)
	}
	if l.err != "" {
		buf = appendTextValue(buf, " err=", l.err)
	}
	return append(buf, '\n')
}

// appendMillis appends t as the TextHandler writes a record's time: RFC
// 3339 in its zone, to the millisecond, always three digits of it.
func appendMillis(buf []byte, t time.Time) []byte {
	const prefix = len("2006-01-02T15:04:05.000")
	n := len(buf)
	// RFC3339Nano drops trailing zeros; a tenth of a millisecond more
	// keeps four digits, of which the fourth is then cut.
	buf = t.Round(0).Truncate(time.Millisecond).Add(time.Millisecond/10).AppendFormat(buf, time.RFC3339Nano)
	return append(buf[:n+prefix], buf[n+prefix+1:]...)
}

// appendTextValue appends key and a string value as the TextHandler
// writes them: quoted (strconv.Quote) when the value is empty or holds a
// space, an '=', a '"', a control character, or a rune that is not
// printable or not valid UTF-8; as it is otherwise.
func appendTextValue(buf []byte, key, v string) []byte {
	buf = append(buf, key...)
	if textNeedsQuotes(v) {
		return strconv.AppendQuote(buf, v)
	}
	return append(buf, v...)
}

func textNeedsQuotes(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b < 0x20 || b == ' ' || b == '=' || b == '"' {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// The errors Options.WriteError is given in place of the mux's own
// plain-text answers.
var (
	// ErrNotFound is the mux's 404: no route has the request's path, or
	// the path is not written as the route's is (the mux would redirect).
	ErrNotFound = errors.New("no route has this path")
	// ErrMethodNotAllowed is the mux's 405: a route has the path, not the
	// method. The mux's Allow header is kept.
	ErrMethodNotAllowed = errors.New("no route has this method for this path")
)

// Options is what the access log needs of the server whose requests it
// logs.
type Options struct {
	// MaxBodyBytes caps every request body.
	MaxBodyBytes int64
	// WriteError answers a request with err in the server's envelope: a
	// panic's error, when the handler had not begun its answer, and
	// ErrNotFound or ErrMethodNotAllowed in place of the mux's own answers.
	// It hands the access log the error it answers with (NoteError).
	WriteError func(w http.ResponseWriter, err error)
	// Forwarded, if set, is the client a trusted proxy forwarded r for, and
	// whether r's peer is one; unset, the peer is always the client.
	Forwarded func(r *http.Request) (client netip.Addr, ok bool)
	// Answered, if set, is told of each request once it is answered: its
	// route (the mux's pattern, "" where none matched), its HTTP status, and
	// the error noted for it (nil for none).
	Answered func(route string, code int, cause error)
}

// Handler writes one log line per request (method, path, route, status,
// duration, and the cause of a failure; never a token, code or secret:
// bodies, queries and headers are not logged) and names the client's
// address: the peer's, or behind a trusted proxy the one it forwarded, with
// the proxy's as "proxy". It also caps request bodies, answers a panic
// with an internal error, and answers the mux's own 404 and 405 with
// o.WriteError.
func Handler(log *slog.Logger, o Options, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// MaxBytesReader gets the server's own writer, so it can close the
		// connection after a 413. A request without a body (net/http's
		// NoBody: no Content-Length, not chunked) has nothing to cap.
		if r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, o.MaxBodyBytes)
		}
		rw := &responseWriter{ResponseWriter: w, req: r, writeError: o.WriteError}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				err := fmt.Errorf("panic: %v\n%s", v, debug.Stack())
				if rw.status == 0 {
					o.WriteError(rw, err)
				} else {
					rw.cause = err // Too late for an error response; the log still says why.
				}
			}
			now := time.Now()
			l := line{at: now, level: slog.LevelInfo, method: r.Method, path: r.URL.Path, route: r.Pattern,
				status: rw.status, duration: now.Sub(start), remote: r.RemoteAddr}
			if rw.status >= 500 {
				l.level = slog.LevelError
			}
			if client, ok := forwarded(o.Forwarded, r); ok {
				l.remote, l.proxy = client.String(), r.RemoteAddr
			}
			if rw.cause != nil {
				l.err = rw.cause.Error()
			}
			if o.Answered != nil {
				o.Answered(r.Pattern, rw.status, rw.cause)
			}
			l.write(r.Context(), log)
		}()
		next.ServeHTTP(rw, r)
		if rw.status == 0 {
			rw.status = http.StatusOK // The handler wrote nothing; net/http sends 200.
		}
	})
}

// forwarded is f(r), or no client forwarded where f is nil.
func forwarded(f func(*http.Request) (netip.Addr, bool), r *http.Request) (netip.Addr, bool) {
	if f == nil {
		return netip.Addr{}, false
	}
	return f(r)
}

// NoteError hands the access log err, the error a request is answered
// with: its line shows it, and Options.Answered is given it. w is the
// writer the access log passed down; any other is left alone.
func NoteError(w http.ResponseWriter, err error) {
	if rw, ok := w.(*responseWriter); ok {
		rw.cause = err
	}
}

// responseWriter records what the access log needs. It also puts the mux's
// own answers in the server's envelope (writeError): a 404 or 405 in plain text where no route
// matched (the request's Pattern is empty), keeping the Allow header; and
// a redirect, which the mux sends for a path like /user/../login, //login or
// /mock, and which wxlogin's handlers never send. A path written otherwise
// than as a route is written is not that route: it gets 404 rather than a
// redirect a client might follow with its token.
type responseWriter struct {
	http.ResponseWriter
	req        *http.Request
	writeError func(http.ResponseWriter, error)
	status     int
	cause      error
	discard    bool // the mux's plain-text body is being replaced
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	redirect := code == http.StatusMovedPermanently || code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect
	if redirect || w.req.Pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.discard = true
		err := ErrNotFound
		switch {
		case redirect:
			code = http.StatusNotFound
			w.Header().Del("Location")
			// The mux matched the cleaned path, which is not the path sent:
			// the access log shows no route, as for any other 404.
			w.req.Pattern = ""
		case code == http.StatusMethodNotAllowed:
			err = ErrMethodNotAllowed
		}
		w.status = code
		w.Header().Del("X-Content-Type-Options") // The envelope's writer sets it again, with its own Content-Type.
		w.writeError(w.ResponseWriter, err)
		return
	}
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.discard {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Writer hands log lines to a goroutine of its own that writes them out,
// so that a request never waits for a write to stderr: under load, the lines
// of many requests go out in one write (BENCHMARKS.md, GET /user). Lines keep
// their order, and Close writes whatever is pending. If the reader of stderr
// stops reading, writers wait once maxPendingLog bytes are pending, as
// direct writes would.
type Writer struct {
	out  io.Writer
	wake chan struct{} // holds a signal while lines are pending
	done chan struct{} // closed once the goroutine has written everything

	mu      sync.Mutex // guards pending and closed
	taken   sync.Cond  // signalled, with mu, each time pending is taken
	pending []byte
	closed  bool
}

// maxPendingLog is how many bytes of lines a Writer holds before writers
// wait.
const maxPendingLog = 1 << 20

// NewWriter is a Writer to out, whose goroutine runs until Close.
func NewWriter(out io.Writer) *Writer {
	w := &Writer{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.taken.L = &w.mu
	go w.writeOut()
	return w
}

// Write hands p, one or more whole lines, to the goroutine; after Close,
// it writes p itself.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.pending) >= maxPendingLog && !w.closed {
		w.taken.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		return w.out.Write(p)
	}
	w.pending = append(w.pending, p...)
	w.mu.Unlock()
	w.signal()
	return len(p), nil
}

// signal wakes the writing goroutine, unless a signal is already waiting.
func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// writeOut writes pending lines until close.
func (w *Writer) writeOut() {
	defer close(w.done)
	var spare []byte
	for range w.wake {
		w.mu.Lock()
		lines, closed := w.pending, w.closed
		w.pending = spare[:0]
		w.taken.Broadcast()
		w.mu.Unlock()
		if len(lines) > 0 {
			w.out.Write(lines) // There is nowhere to report a failure to write the log.
		}
		spare = lines
		if closed {
			return
		}
	}
}

// Close writes what is pending and stops the goroutine. Later lines are
// written directly.
func (w *Writer) Close() {
	w.mu.Lock()
	w.closed = true
	w.taken.Broadcast()
	w.mu.Unlock()
	w.signal()
	<-w.done
}
