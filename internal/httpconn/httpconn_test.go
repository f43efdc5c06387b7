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
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// server is an httptest server of h that counts the connections it
// accepts.
func server(t *testing.T, h http.HandlerFunc, useTLS bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, &conns
}

func newClient(t *testing.T, srv *httptest.Server) *Client {
	t.Helper()
	var cfg *tls.Config
	if srv.TLS != nil {
		cfg = srv.Client().Transport.(*http.Transport).TLSClientConfig
	}
	c, err := New(srv.URL+"/api", 4, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Calls to one origin reuse one kept-alive connection, over HTTP and over
// TLS; a body with a length and a chunked one are both read whole; the
// status is the server's; the request is a GET of the target, with Host.
func TestCallsShareAKeptAliveConnection(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.Host == "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			if r.URL.Query().Get("chunked") != "" {
				w.Write([]byte(`{"a":`))
				w.(http.Flusher).Flush() // no length: chunked
				w.Write([]byte(`1}`))
				return
			}
			if r.URL.Query().Get("status") != "" {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
		}, useTLS)
		c := newClient(t, srv)
		for _, tt := range []struct {
			target string
			status int
			body   string
		}{
			{"/api/one?x=1", 200, `{"path":"/api/one"}`},
			{"/api/two?chunked=1", 200, `{"a":1}`},
			{"/api/three?status=1", 503, `{"path":"/api/three"}`},
			{"/api/four", 200, `{"path":"/api/four"}`},
		} {
			status, body, err := c.Get(t.Context(), tt.target, 5*time.Second, 1<<10)
			if err != nil || status != tt.status || string(body) != tt.body {
				t.Errorf("TLS %v: GET %s = %d %q, %v; want %d %q", useTLS, tt.target, status, body, err, tt.status, tt.body)
			}
		}
		if n := conns.Load(); n != 1 {
			t.Errorf("TLS %v: four calls opened %d connections; want one", useTLS, n)
		}
	}
}

// A connection the server closed while it was idle fails before any byte
// of an answer (or its request fails to be written); the call is made
// again on a new connection, and succeeds, whenever the close comes.
func TestAConnectionClosedWhileIdleIsRedialled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				// One answer, kept alive as far as the client can tell,
				// then the connection closed, as a server's idle timeout does.
				defer nc.Close()
				if _, err := http.ReadRequest(bufio.NewReader(nc)); err != nil {
					return
				}
				io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	c, err := New("http://"+ln.Addr().String(), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for i := range 3 {
		status, body, err := c.Get(t.Context(), "/", 5*time.Second, 1<<10)
		if err != nil || status != 200 || string(body) != "ok" {
			t.Fatalf("call %d = %d %q, %v; want 200 ok", i, status, body, err)
		}
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("three calls on connections closed after each: %d connections; want 3", n)
	}
}

// A call that gets no answer ends by its timeout, or when its context
// does, with an error that says which and never names the target; the
// dropped connection is not kept.
func TestACallEndsInTime(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, false)
	c := newClient(t, srv)
	start := time.Now()
	_, _, err := c.Get(t.Context(), "/api/x?secret=s3cret", 100*time.Millisecond, 1<<10)
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("a call past its timeout: %v; want a timeout, context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a call with a 100 ms timeout took %v", took)
	}
	if err != nil && strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q names the target", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, _, err := c.Get(ctx, "/api/x", time.Minute, 1<<10); !errors.Is(err, context.Canceled) {
		t.Errorf("a call whose context was cancelled: %v; want context.Canceled", err)
	}
	if len(c.idle) != 0 {
		t.Errorf("%d connections kept after calls that got no answer; want none", len(c.idle))
	}
}

// Of an answer longer than the cap, the cap's worth is returned, and the
// connection, not at the next answer's start, is dropped.
func TestALongAnswerIsCutAndItsConnectionDropped(t *testing.T) {
	srv, conns := server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("x", 100)) }, false)
	c := newClient(t, srv)
	for range 2 {
		status, body, err := c.Get(t.Context(), "/api", 5*time.Second, 10)
		if err != nil || status != 200 || string(body) != strings.Repeat("x", 10) {
			t.Errorf("a 100-byte answer under a cap of 10 = %d %q, %v; want 200 and 10 bytes", status, body, err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("two cut answers: %d connections; want two", n)
	}
}

// FuzzGet: whatever a server answers, Get returns, with a status and body
// or an error, and never panics.
func FuzzGet(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 302 Found\r\nLocation: http://evil\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nshort"))
	f.Add([]byte("garbage\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		c, err := New("http://wechat.test", 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.dial = func(context.Context, string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer server.Close()
				if _, err := http.ReadRequest(bufio.NewReader(server)); err != nil {
					return
				}
				server.Write(answer)
			}()
			return client, nil
		}
		defer c.Close()
		status, body, err := c.Get(context.Background(), "/sns/x", time.Second, 1<<10)
		if err == nil && (status < 200 || status > 999 || len(body) > 1<<10) {
			t.Fatalf("Get = %d and %d bytes, no error", status, len(body))
		}
	})
}
