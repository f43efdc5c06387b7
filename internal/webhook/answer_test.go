package webhook

import (
	"bufio"
	"bytes"
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
