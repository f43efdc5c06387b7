package webhook

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// BenchmarkAnswer reads a round's worth (100) of pipelined answers, each
// as a receiver typically sends it, and drops their bodies, as a round
// does: the part of the sender's CPU that is not signing or writing.
func BenchmarkAnswer(b *testing.B) {
	for _, bc := range []struct {
		name   string
		answer string
	}{
		{"200 with a body", "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\nContent-Length: 2\r\n\r\nok"},
		{"204", "HTTP/1.1 204 No Content\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\n\r\n"},
		{"200 chunked", "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const round = 100
			wire := []byte(strings.Repeat(bc.answer, round))
			src := bytes.NewReader(wire)
			c := &conn{room: &budget{r: src}}
			c.br = bufio.NewReaderSize(c.room, 4096)
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(wire)
				c.br.Reset(c.room)
				for range round {
					resp, err := c.answer()
					if err != nil {
						b.Fatal(err)
					}
					if _, err := c.discard(resp); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// heard is what a round makes of one answer, and all it makes of it: the
// fields a differential test compares.
type heard struct {
	fail    string // why the answer failed its post: "" (it did not), "cut short", "refused", or a 1xx's error
	code    int
	status  string // for a code other than 2xx: the refusal's error shows it
	close   bool   // the connection ends after the answer
	framed  bool   // a code that has no body says it has one
	body    int64  // the body's bytes read
	bodyErr bool   // reading the body failed
	next    int64  // where the next answer starts, when the round reads on
}

// ends reports whether a round reads no further after h, as attempt
// judges it.
func (h heard) ends() bool {
	return h.fail != "" || h.bodyErr || h.body == maxBody || h.close || h.framed
}

// failure classes err as attempt does: io.EOF and io.ErrUnexpectedEOF are
// the receiver gone (errNotAnswered), a 1xx answer keeps its words, and
// any other error refuses.
func failure(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "cut short"
	case strings.HasPrefix(err.Error(), "the receiver answered"):
		return err.Error()
	}
	return "refused"
}

// readRound reads wire as a round of four posts reads its answers, with
// http.ReadResponse as conn did before answerReader (withNetHTTP), or with
// conn.answer, and returns what it heard, up to the answer after which the
// round reads no further.
func readRound(wire []byte, withNetHTTP bool) []heard {
	src := bytes.NewReader(wire)
	c := &conn{room: &budget{r: src}}
	c.br = bufio.NewReaderSize(c.room, 4096)
	var round []heard
	for range 4 {
		var h heard
		if withNetHTTP {
			resp, err := netHTTPAnswer(c)
			h.fail = failure(err)
			if err == nil {
				h.code, h.close, h.framed = resp.StatusCode, resp.Close, netHTTPFramedWithoutBody(resp)
				if h.code < 200 || h.code > 299 {
					h.status = resp.Status
				}
				var err error
				h.body, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
				resp.Body.Close()
				h.bodyErr = err != nil
			}
		} else {
			a, err := c.answer()
			h.fail = failure(err)
			if err == nil {
				h.code, h.status, h.close, h.framed = a.code, a.status, a.close, framedWithoutBody(a)
				var err error
				h.body, err = c.discard(a)
				h.bodyErr = err != nil
			}
		}
		if !h.ends() {
			h.next = int64(len(wire)) - int64(src.Len()) - int64(c.br.Buffered())
		}
		round = append(round, h)
		if h.ends() {
			break
		}
	}
	return round
}

// netHTTPAnswer is conn.answer as it was, with http.ReadResponse.
func netHTTPAnswer(c *conn) (*http.Response, error) {
	c.room.n = maxAnswer
	for {
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode < 100 {
			c.room.n += maxBody
			return resp, nil
		}
		if resp.StatusCode == http.StatusSwitchingProtocols || netHTTPFramedWithoutBody(resp) {
			return nil, fmt.Errorf("the receiver answered %s", resp.Status)
		}
	}
}

// netHTTPFramedWithoutBody is framedWithoutBody as it was, on an
// *http.Response.
func netHTTPFramedWithoutBody(resp *http.Response) bool {
	if resp.StatusCode >= 200 && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
		return false
	}
	length := resp.Header.Get("Content-Length")
	return len(resp.TransferEncoding) > 0 || resp.Header.Get("Transfer-Encoding") != "" || length != "" && length != "0"
}

// checkAgainstNetHTTP fails t if a round reading wire with conn.answer
// makes anything other of it than one reading it with http.ReadResponse.
func checkAgainstNetHTTP(t *testing.T, wire []byte) {
	t.Helper()
	want, got := readRound(wire, true), readRound(wire, false)
	if !slices.Equal(got, want) {
		t.Errorf("answers %q:\nread as %+v;\nnet/http reads %+v", abridge(wire), got, want)
	}
}

// abridge shortens a long input for a failure message.
func abridge(b []byte) []byte {
	if len(b) > 600 {
		return append(slices.Clip(b[:300]), "…"+string(b[len(b)-300:])...)
	}
	return b
}

// FuzzAnswer checks that conn.answer and conn.discard, which read the
// receiver's answers without net/http, make of any bytes what
// http.ReadResponse and its body did: the same answers accepted and
// refused, the same codes, the same connections closed, and the next
// answer read from the same byte. Its seeds, in testdata/fuzz/FuzzAnswer,
// are the answers of every kind conn.go handles.
func FuzzAnswer(f *testing.F) {
	f.Fuzz(checkAgainstNetHTTP)
}

// Answers too long for the fuzzer to find are read as net/http reads them
// too: bodies about maxBody long, lines longer than the connection's
// buffer, headers past maxAnswer.
func TestLongAnswersAreReadAsNetHTTPReadsThem(t *testing.T) {
	body := func(n int) string { return strings.Repeat("b", n) }
	chunk := func(n int) string { return fmt.Sprintf("%x\r\n%s\r\n", n, body(n)) }
	const next = "HTTP/1.1 204 No Content\r\n\r\n"
	for name, wire := range map[string]string{
		"a body of maxBody":                  "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n" + body(maxBody) + next,
		"a body of maxBody-1":                "HTTP/1.1 200 OK\r\nContent-Length: 65535\r\n\r\n" + body(maxBody-1) + next,
		"a body past maxBody":                "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + body(70000) + next,
		"a body past maxBody, cut short":     "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + body(maxBody+10),
		"a body to the end past maxBody":     "HTTP/1.1 200 OK\r\n\r\n" + body(70000),
		"chunks of maxBody":                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(maxBody/2) + chunk(maxBody/2) + "0\r\n\r\n" + next,
		"chunks of maxBody-1":                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(maxBody/2) + chunk(maxBody/2-1) + "0\r\nX: y\r\n\r\n" + next,
		"chunks past maxBody":                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(maxBody) + chunk(10) + "0\r\n\r\n" + next,
		"a header longer than the buffer":    "HTTP/1.1 200 OK\r\nX-Long: " + body(10000) + "\r\nContent-Length: 2\r\n\r\nok" + next,
		"a Content-Length after a long line": "HTTP/1.1 204 No Content\r\nX-Long: " + body(5000) + "\r\nContent-Length: 0\r\n\r\n" + next,
		"a status longer than the buffer":    "HTTP/1.1 500 " + body(9000) + "\r\nContent-Length: 0\r\n\r\n" + next,
		"a folded header of long lines":      "HTTP/1.1 200 OK\r\nX-Long: " + body(5000) + "\r\n " + body(5000) + "\r\n\t" + body(5000) + "\r\nContent-Length: 0\r\n\r\n" + next,
		"a long trailer":                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + body(5000) + "\r\n\r\n" + next,
		"a header past maxAnswer":            "HTTP/1.1 204 No Content\r\nX-Big: " + body(2*maxAnswer) + "\r\n\r\n",
		"headers past maxAnswer":             "HTTP/1.1 204 No Content\r\n" + strings.Repeat("X-Many: "+body(100)+"\r\n", maxAnswer/100) + "\r\n",
		"interim answers past maxAnswer":     strings.Repeat("HTTP/1.1 100 Continue\r\nX: "+body(1000)+"\r\n\r\n", maxAnswer/1000) + next,
	} {
		t.Run(name, func(t *testing.T) { checkAgainstNetHTTP(t, []byte(wire)) })
	}
}

// An answer of the usual kinds costs no allocation: issue 27's point.
func TestAUsualAnswerCostsNoAllocation(t *testing.T) {
	for _, wire := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 204 No Content\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
	} {
		src := strings.NewReader(wire)
		c := &conn{room: &budget{r: src}}
		c.br = bufio.NewReaderSize(c.room, 4096)
		allocs := testing.AllocsPerRun(100, func() {
			src.Reset(wire)
			c.br.Reset(c.room)
			a, err := c.answer()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.discard(a); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("reading %q: %v allocations; want 0", wire, allocs)
		}
	}
}
