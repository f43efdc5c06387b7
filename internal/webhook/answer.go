package webhook

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
)

// answer is what a round needs of the receiver's answer to one post: its
// status, whether the connection ends after it, and how its body is
// framed. It stands in for the *http.Response that http.ReadResponse
// builds, which costs some ten allocations an answer (the Response, its
// Header map and its strings, a body reader): most of the sender's CPU,
// with a hundred answers a round (issue 27).
type answer struct {
	code int
	// status is the status line after the version ("500 Internal Server
	// Error"), as http.Response.Status has it, kept only for an answer
	// that fails its post: the error shows it.
	status string
	close  bool // the connection ends after this answer (http.Response.Close)
	body   framing
	length int64 // the body's length, when body is byLength
	// claimed: the answer says it has a body, chunked or by a
	// Content-Length other than "0", whatever its code allows
	// (framedWithoutBody asks).
	claimed bool
}

// framing is how an answer's body ends, as net/http's transfer.go decides
// it (RFC 9112 §6.3).
type framing uint8

const (
	noBody    framing = iota
	byLength          // Content-Length bytes
	byChunks          // Transfer-Encoding: chunked, then a trailer
	byClosing         // the rest of the connection: no length, not chunked
)

// answerReader reads answers off a connection as http.ReadResponse does,
// accepting and refusing the same bytes, but keeps only what a round
// needs, in buffers it reuses: an answer of the usual kind (a status line,
// a few header lines, a short body) costs no allocation, a chunked one
// one. Its buffers hold only what does not fit in the connection's
// bufio.Reader: a line longer than it, a header folded over lines
// (obs-fold), the first Content-Length while later headers are read.
type answerReader struct {
	line   []byte // a line longer than the bufio.Reader's buffer, assembled
	field  []byte // a header field folded over several lines, unfolded
	length []byte // the first Content-Length value, as textproto keeps it
	status []byte // the status line after the version, for a code not 2xx

	chunks  chunkedBody      // a chunked body being dropped
	limited io.LimitedReader // chunks, up to maxBody
}

// Errors of answers net/http refuses. Their words follow net/http's: a
// log of a failed round reads as it did before.
var (
	errMalformedHeader = errors.New("malformed MIME header line")
	errTrailerEOF      = errors.New("http: unexpected EOF reading trailer")
	errLongTrailer     = errors.New("http: suspiciously long trailer after chunked body")
)

// read reads an answer's status line and headers, an interim (1xx) one
// too, and leaves br at its body. It fails where http.ReadResponse(br,
// nil) fails, with io.ErrUnexpectedEOF where that does, and otherwise
// judges the answer as it and transfer.go do: its code, whether the
// connection closes after it, how its body ends.
func (ar *answerReader) read(br *bufio.Reader) (answer, error) {
	var a answer
	line, err := ar.readLine(br)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return a, err
	}
	proto, status, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return a, fmt.Errorf("malformed HTTP response %q", line)
	}
	for len(status) > 0 && status[0] == ' ' {
		status = status[1:]
	}
	code, _, _ := bytes.Cut(status, []byte(" "))
	var codeOK bool
	if a.code, codeOK = parseCode(code); !codeOK {
		return a, fmt.Errorf("malformed HTTP status code %q", code)
	}
	major, minor, ok := parseVersion(proto)
	if !ok {
		return a, fmt.Errorf("malformed HTTP version %q", proto)
	}
	if a.code < 200 || a.code > 299 {
		// Kept while the headers are read, for the error that shows it.
		ar.status = append(ar.status[:0], status...)
	}

	// The headers, read as textproto.Reader.ReadMIMEHeader reads them;
	// what they mean is judged once they are all read, as readTransfer
	// does, so that an answer cut short fails as one, whatever its
	// headers.
	var h headerSeen
	if err := ar.readFields(br, &h); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return a, err
	}

	// Whether the connection closes after it: transfer.go's shouldClose.
	a.close = major < 1 || h.close || major == 1 && minor == 0 && !h.keepAlive
	if major == 0 && minor == 0 {
		major, minor = 1, 1 // as readTransfer takes it, for Transfer-Encoding
	}
	// Transfer-Encoding: only one, only chunked, and only from HTTP/1.1 on
	// (transfer.go's parseTransferEncoding: the strictness guards against
	// request smuggling).
	chunked := false
	if h.encodings > 0 && (major > 1 || major == 1 && minor >= 1) {
		if h.encodings != 1 {
			return a, errors.New("too many transfer encodings")
		}
		if !h.chunked {
			return a, errors.New("unsupported transfer encoding")
		}
		chunked = true
	}
	// Content-Length: several only if they agree; a number; checked even
	// where the code allows no body (transfer.go's fixLength).
	length := int64(-1)
	if h.lengths > 0 {
		first := trimSpace(ar.length)
		if h.lengthsDiffer {
			return a, errors.New("http: message cannot contain multiple Content-Length headers")
		}
		if length, ok = parseLength(first); !ok {
			return a, fmt.Errorf("bad Content-Length %q", first)
		}
		// framedWithoutBody reads the header as Header.Get returns it:
		// as sent when it came once, trimmed when several agreed.
		given := ar.length
		if h.lengths > 1 {
			given = first
		}
		a.claimed = string(given) != "0"
	}
	if chunked && h.badTrailer {
		return a, errors.New("bad trailer key")
	}
	a.claimed = a.claimed || chunked
	// Only a refusal's error shows the status: an interim answer read past
	// costs no string.
	interim := a.code >= 100 && a.code <= 199 && a.code != 101 && !a.claimed
	if (a.code < 200 || a.code > 299) && !interim {
		a.status = string(ar.status)
	}

	bodyAllowed := !(a.code >= 100 && a.code <= 199 || a.code == 204 || a.code == 304)
	switch {
	case !bodyAllowed:
		a.body = noBody
	case chunked:
		a.body = byChunks
	case length == 0:
		a.body = noBody
	case length > 0:
		a.body, a.length = byLength, length
	default:
		// No length and not chunked: the body is the rest of the
		// connection (RFC 9112 §6.3).
		a.body, a.close = byClosing, true
	}
	return a, nil
}

// headerSeen is what a round needs of an answer's headers: the values of
// the four that frame its body and its connection.
type headerSeen struct {
	lengths       int  // Content-Length headers
	lengthsDiffer bool // one differs from the first (trimmed)
	encodings     int  // Transfer-Encoding headers
	chunked       bool // the first says chunked
	close         bool // a Connection header has the token close
	keepAlive     bool // a Connection header has the token keep-alive
	badTrailer    bool // Trailer names a header a trailer cannot carry
}

// readFields reads header fields up to the empty line that ends them, as
// textproto.Reader.ReadMIMEHeader does, checking each field's name and
// value the same way, and notes in h, if h is not nil, what the round
// needs of them. A chunked body's trailer is read with h nil.
func (ar *answerReader) readFields(br *bufio.Reader, h *headerSeen) error {
	// The first field cannot start with a space: it would fold onto the
	// status line.
	if b, err := br.Peek(1); err == nil && (b[0] == ' ' || b[0] == '\t') {
		return errors.New("malformed MIME header initial line")
	}
	for {
		kv, err := ar.readField(br)
		if err != nil {
			return err
		}
		if len(kv) == 0 {
			return nil
		}
		name, value, _ := bytes.Cut(kv, []byte(":"))
		spaced, ok := checkName(name)
		if !ok {
			return errMalformedHeader
		}
		for _, c := range value {
			if !validValueByte(c) {
				return errMalformedHeader
			}
		}
		for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
			value = value[1:]
		}
		// A name with a space in it is accepted but not canonicalized
		// (go.dev/issue/34540): it is none of the four.
		if h == nil || spaced {
			continue
		}
		switch {
		case equalFold(name, "Content-Length"):
			h.lengths++
			if h.lengths == 1 {
				ar.length = append(ar.length[:0], value...)
			} else if !bytes.Equal(trimSpace(value), trimSpace(ar.length)) {
				h.lengthsDiffer = true
			}
		case equalFold(name, "Transfer-Encoding"):
			h.encodings++
			if h.encodings == 1 {
				h.chunked = equalFold(value, "chunked")
			}
		case equalFold(name, "Connection"):
			h.close = h.close || hasToken(value, "close")
			h.keepAlive = h.keepAlive || hasToken(value, "keep-alive")
		case equalFold(name, "Trailer"):
			h.badTrailer = h.badTrailer || hasToken(value, "Transfer-Encoding") ||
				hasToken(value, "Trailer") || hasToken(value, "Content-Length")
		}
	}
}

// readField reads one header field, its lines folded (obs-fold: a line
// that starts with a space or a tab goes on the one before) into one,
// as textproto.Reader.readContinuedLineSlice does: each line trimmed of
// spaces and tabs, joined by one space. An empty line is the end of the
// headers.
func (ar *answerReader) readField(br *bufio.Reader) ([]byte, error) {
	line, err := ar.readLine(br)
	if err != nil || len(line) == 0 {
		return line, err
	}
	// The field's name is on its first line.
	if bytes.IndexByte(line, ':') < 0 {
		return nil, fmt.Errorf("malformed MIME header: missing colon: %q", line)
	}
	// The usual case: the next line is already read, and not folded.
	if br.Buffered() > 0 {
		if next, _ := br.Peek(1); next[0] != ' ' && next[0] != '\t' {
			return trimOWS(line), nil
		}
	}
	// Reading on may move line's bytes in br: they are copied first.
	ar.field = append(ar.field[:0], trimOWS(line)...)
	for skipSpace(br) > 0 {
		ar.field = append(ar.field, ' ')
		line, err := ar.readLine(br)
		if err != nil {
			break // the next field's read fails the same way
		}
		ar.field = append(ar.field, trimOWS(line)...)
	}
	return ar.field, nil
}

// readLine reads a line without its \n or \r\n, as textproto.Reader's
// readLineSlice does: in br's buffer, or assembled in ar.line when it is
// longer. Lines are as long as the budget under br lets them be: an
// endless one fails there.
func (ar *answerReader) readLine(br *bufio.Reader) ([]byte, error) {
	line, more, err := br.ReadLine()
	if err != nil || !more {
		return line, err
	}
	ar.line = append(ar.line[:0], line...)
	for more {
		if line, more, err = br.ReadLine(); err != nil {
			return nil, err
		}
		ar.line = append(ar.line, line...)
	}
	return ar.line, nil
}

// skipSpace reads past spaces and tabs and returns how many it read.
func skipSpace(br *bufio.Reader) int {
	n := 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			return n // the next read fails the same way
		}
		if c != ' ' && c != '\t' {
			br.UnreadByte()
			return n
		}
		n++
	}
}

// discard reads a's body and drops it, so that the next answer can be
// read, and returns how much of the body it read: up to maxBody. A body
// cut short fails with io.ErrUnexpectedEOF; a chunked one is read with
// its trailer, as net/http reads them. What a body has past maxBody is
// not read: the connection ends after it (net/http's Body.Close read it
// all first, to no end).
func (ar *answerReader) discard(br *bufio.Reader, a answer) (int64, error) {
	switch a.body {
	case byLength:
		n, err := br.Discard(int(min(a.length, maxBody)))
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return int64(n), err
	case byClosing:
		n, err := br.Discard(maxBody)
		if err == io.EOF {
			err = nil
		}
		return int64(n), err
	case byChunks:
		// httputil's chunked reader is net/http's own: one allocation,
		// and a chunked answer is framed exactly as net/http frames it.
		ar.chunks = chunkedBody{ar: ar, br: br, src: httputil.NewChunkedReader(br)}
		ar.limited = io.LimitedReader{R: &ar.chunks, N: maxBody}
		n, err := io.Copy(io.Discard, &ar.limited)
		ar.chunks = chunkedBody{}
		return n, err
	}
	return 0, nil
}

// chunkedBody is a chunked body that, at its end, reads its trailer, as
// net/http's body does.
type chunkedBody struct {
	ar  *answerReader
	br  *bufio.Reader
	src io.Reader // the chunked reader
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	if err == io.EOF {
		if terr := b.ar.readTrailer(b.br); terr != nil {
			err = terr
		}
	}
	return n, err
}

// readTrailer reads the trailer after a chunked body's last chunk, as
// net/http's body.readTrailer does: fields, as headers are, though only
// ones that end in the bufio.Reader's buffer (so that it needs no other
// bound).
func (ar *answerReader) readTrailer(br *bufio.Reader) error {
	buf, err := br.Peek(2)
	if bytes.Equal(buf, []byte("\r\n")) {
		br.Discard(2)
		return nil
	}
	if len(buf) < 2 {
		return errTrailerEOF
	}
	if err != nil {
		return err
	}
	if !endsInBuffer(br) {
		return errLongTrailer
	}
	if err := ar.readFields(br, nil); err != nil {
		if err == io.EOF {
			return errTrailerEOF
		}
		return err
	}
	return nil
}

// endsInBuffer reports whether an empty line (\r\n\r\n) comes before
// br's buffer is full: net/http's seeUpcomingDoubleCRLF.
func endsInBuffer(br *bufio.Reader) bool {
	for size := 4; ; size++ {
		buf, err := br.Peek(size)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// framedWithoutBody reports whether an answer that has no body (1xx, 204,
// 304: RFC 9110 §6.4.1) says it has one: the bytes of that body would be
// read as the next answer, so the connection is not read further. A code
// under 100, which net/http takes for a final answer, is asked too.
func framedWithoutBody(a answer) bool {
	if a.code >= 200 && a.code != 204 && a.code != 304 {
		return false
	}
	return a.claimed
}

// parseCode parses a status code as http.ReadResponse does: three
// characters strconv.Atoi takes (a sign counts as one), not negative.
func parseCode(s []byte) (int, bool) {
	if len(s) != 3 {
		return 0, false
	}
	digits, negative := s, false
	if s[0] == '+' || s[0] == '-' {
		digits, negative = s[1:], s[0] == '-'
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, !negative || n == 0
}

// parseVersion parses "HTTP/x.y" as http.ParseHTTPVersion does: one digit
// each.
func parseVersion(s []byte) (major, minor int, ok bool) {
	if len(s) != len("HTTP/x.y") || string(s[:5]) != "HTTP/" || s[6] != '.' ||
		s[5] < '0' || s[5] > '9' || s[7] < '0' || s[7] > '9' {
		return 0, 0, false
	}
	return int(s[5] - '0'), int(s[7] - '0'), true
}

// parseLength parses a Content-Length as net/http does: decimal digits,
// at most 1<<63 - 1.
func parseLength(s []byte) (int64, bool) {
	if len(s) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range s {
		if c < '0' || c > '9' || n > (1<<63-1)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<63-1 {
			return 0, false
		}
	}
	return int64(n), true
}

// checkName reports whether a header name is one textproto accepts: a
// token (RFC 9110 §5.1), or one with spaces, which it keeps as it is.
func checkName(name []byte) (spaced, ok bool) {
	if len(name) == 0 {
		return false, false
	}
	for _, c := range name {
		switch {
		case c == ' ':
			spaced = true
		case c >= 0x80 || !tokenByte[c]:
			return false, false
		}
	}
	return spaced, true
}

// tokenByte holds the bytes of a token (RFC 9110 §5.6.2).
var tokenByte = [0x80]bool{
	'!': true, '#': true, '$': true, '%': true, '&': true, '\'': true, '*': true, '+': true,
	'-': true, '.': true, '^': true, '_': true, '`': true, '|': true, '~': true,
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true, 'I': true,
	'J': true, 'K': true, 'L': true, 'M': true, 'N': true, 'O': true, 'P': true, 'Q': true, 'R': true,
	'S': true, 'T': true, 'U': true, 'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true,
	'j': true, 'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true, 'q': true, 'r': true,
	's': true, 't': true, 'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
}

// validValueByte reports whether c may be in a header value (RFC 9110
// §5.5): visible, a space or a tab, or obs-text.
func validValueByte(c byte) bool {
	return c >= 0x20 && c != 0x7f || c == '\t'
}

// hasToken reports whether a comma-separated header value lists token,
// in any case, as httpguts.HeaderValuesContainsToken does.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte(","))
		if equalFold(trimOWS(item), token) {
			return true
		}
	}
	return false
}

// equalFold reports whether b is s in ASCII letters of either case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if lower(c) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// trimOWS trims spaces and tabs (RFC 9110 §5.6.3).
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// trimSpace trims as textproto.TrimString does: spaces, tabs, \r, \n.
func trimSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}
