package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"
	"wxlogin/internal/limits"
	"wxlogin/internal/metrics"
)

// This file is the access log: one line per request, written by a
// goroutine of its own, and the boundary every request passes on its way
// in (a body cap) and out (panics and the mux's own answers put in the
// envelope).

// newLogger is wxlogin's logger on out: text (logfmt) or JSON lines, for
// a log shipper to read, from level up.
func newLogger(out io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// withAccessLog writes one log line per request (method, path, route,
// status, duration, and the cause of a failure; never a token, code or
// secret: bodies, queries and headers are not logged), counts it in m, and
// names the client's address: the peer's, or behind a trusted proxy the one
// it forwarded, with the proxy's as "proxy". It also caps request
// bodies, turns panics into a 500 envelope, and answers the mux's own 404
// and 405 in the envelope.
func withAccessLog(log *slog.Logger, proxies limits.TrustedProxies, m *metrics.Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// MaxBytesReader gets the server's own writer, so it can close the
		// connection after a 413.
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		rw := &responseWriter{ResponseWriter: w, req: r}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				err := fmt.Errorf("panic: %v\n%s", v, debug.Stack())
				if rw.status == 0 {
					writeError(rw, err)
				} else {
					rw.noteError(err) // Too late for an error response; the log still says why.
				}
			}
			level := slog.LevelInfo
			if rw.status >= 500 {
				level = slog.LevelError
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", r.Pattern),
				slog.Int("status", rw.status),
				slog.Duration("duration", time.Since(start)),
			}
			if client, ok := proxies.Forwarded(r); ok {
				attrs = append(attrs, slog.String("remote", client.String()), slog.String("proxy", r.RemoteAddr))
			} else {
				attrs = append(attrs, slog.String("remote", r.RemoteAddr))
			}
			if rw.cause != nil {
				attrs = append(attrs, slog.String("err", rw.cause.Error()))
			}
			countRequest(m, r.Pattern, rw.status, rw.cause)
			log.LogAttrs(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(rw, r)
		if rw.status == 0 {
			rw.status = http.StatusOK // The handler wrote nothing; net/http sends 200.
		}
	})
}

// responseWriter records what the access log needs. It also puts the mux's
// own answers in the envelope: a 404 or 405 in plain text where no route
// matched (the request's Pattern is empty), keeping the Allow header; and
// a redirect, which the mux sends for a path like /user/../login, //login or
// /mock, and which wxlogin's handlers never send. A path written otherwise
// than as a route is written is not that route: it gets 404 rather than a
// redirect a client might follow with its token.
type responseWriter struct {
	http.ResponseWriter
	req     *http.Request
	status  int
	cause   error
	discard bool // the mux's plain-text body is being replaced
}

func (w *responseWriter) noteError(err error) { w.cause = err }

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	redirect := code == http.StatusMovedPermanently || code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect
	if redirect || w.req.Pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.discard = true
		msg := msgNotFound
		switch {
		case redirect:
			code = http.StatusNotFound
			w.Header().Del("Location")
			// The mux matched the cleaned path, which is not the path sent:
			// the access log shows no route, as for any other 404.
			w.req.Pattern = ""
		case code == http.StatusMethodNotAllowed:
			msg = msgMethodNotAllowed
		}
		w.status = code
		w.Header().Del("X-Content-Type-Options") // writeJSON sets it again, with its own Content-Type.
		writeJSON(w.ResponseWriter, code, envelope{Status: statusBadRequest, Msg: msg})
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

// logWriter hands log lines to a goroutine of its own that writes them out,
// so that a request never waits for a write to stderr: under load, the lines
// of many requests go out in one write (BENCHMARKS.md, GET /user). Lines keep
// their order, and close writes whatever is pending. If the reader of stderr
// stops reading, writers wait once maxPendingLog bytes are pending, as
// direct writes would.
type logWriter struct {
	out  io.Writer
	wake chan struct{} // holds a signal while lines are pending
	done chan struct{} // closed once the goroutine has written everything

	mu      sync.Mutex // guards pending and closed
	taken   sync.Cond  // signalled, with mu, each time pending is taken
	pending []byte
	closed  bool
}

const maxPendingLog = 1 << 20

func newLogWriter(out io.Writer) *logWriter {
	w := &logWriter{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.taken.L = &w.mu
	go w.writeOut()
	return w
}

func (w *logWriter) Write(p []byte) (int, error) {
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
func (w *logWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// writeOut writes pending lines until close.
func (w *logWriter) writeOut() {
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

// close writes what is pending and stops the goroutine. Later lines are
// written directly.
func (w *logWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.taken.Broadcast()
	w.mu.Unlock()
	w.signal()
	<-w.done
}
