// Package fastjson writes and reads JSON of a few fixed shapes without
// reflection, exactly as encoding/json writes and reads them: the user
// store's records and the token file's lines, which wxlogin keeps by the
// million, and the body of GET /user, which every page of a mini program
// asks for. encoding/json defines every one of those formats: a writer here
// produces exactly what json.Marshal makes of its struct, and a Reader reads
// a line only where encoding/json would read the same. It is a fast path
// only: a Reader that meets anything it is not sure of says so, and its
// caller decodes the line with encoding/json (strictjson) instead. Why it is
// worth having is in BENCHMARKS.md (start-up, GET /user). The callers'
// tests and fuzz targets check that the two always agree: those of the
// user store's lines (FuzzParseUserLine, FuzzAppendRecord), of the token
// file's (FuzzTokenFileLines), and of the body (TestUserViewJSON).
package fastjson

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// AppendString appends key, as it is, and value as a JSON string. A string
// that needs no escaping is copied; the rest is left to encoding/json, whose
// escaping (HTML characters, U+2028, invalid UTF-8) is the format's.
func AppendString(buf []byte, key, value string) []byte {
	buf = append(buf, key...)
	if !plainString(value) {
		quoted, _ := json.Marshal(value) // Cannot fail for a string.
		return append(buf, quoted...)
	}
	buf = append(buf, '"')
	buf = append(buf, value...)
	return append(buf, '"')
}

// plainString reports whether encoding/json writes s between quotes as it
// is: valid UTF-8 with no control character, quote, backslash, HTML
// character (<, >, &) or line or paragraph separator (U+2028, U+2029).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&':
			return false
		case c == 0xE2 && (strings.HasPrefix(s[i:], "\u2028") || strings.HasPrefix(s[i:], "\u2029")):
			return false
		}
	}
	return utf8.ValidString(s)
}

// AppendTime appends key and t as encoding/json writes a time.Time. It
// cannot fail, so a time encoding/json refuses (a year outside 0 to 9999)
// must never get here: the user store refuses such a clock before it
// writes, and every other time was read from a record.
func AppendTime(buf []byte, key string, t time.Time) []byte {
	buf = append(append(buf, key...), '"')
	buf = t.AppendFormat(buf, time.RFC3339Nano)
	return append(buf, '"')
}

// Span is where a string's text is in a line: line[Start:End].
type Span struct{ Start, End int }

// Reader reads a line left to right, each call expecting what the line's
// writer writes next. The first thing it cannot read, or is not sure
// encoding/json would read the same, makes it fail, and every later call
// then does nothing: Done reports whether it read the whole line.
type Reader struct {
	line []byte // the whole line, for offsets
	rest []byte
	ok   bool
}

// NewReader is a Reader at the start of line.
func NewReader(line []byte) Reader { return Reader{line: line, rest: line, ok: true} }

// Done reports whether every call succeeded and the line has been read to
// its end.
func (r *Reader) Done() bool { return r.ok && len(r.rest) == 0 }

func (r *Reader) offset() int { return len(r.line) - len(r.rest) }

// Optional reads s if the line continues with it, and reports whether it did.
func (r *Reader) Optional(s string) bool {
	if !r.ok || len(r.rest) < len(s) || string(r.rest[:len(s)]) != s {
		return false
	}
	r.rest = r.rest[len(s):]
	return true
}

// Literal reads s, which must come next.
func (r *Reader) Literal(s string) {
	if !r.Optional(s) {
		r.ok = false
	}
}

// Integer reads a JSON integer that fits an int64: an optional minus, then
// 0 or digits not starting with 0.
func (r *Reader) Integer() int64 {
	if !r.ok {
		return 0
	}
	n := 0
	if n < len(r.rest) && r.rest[n] == '-' {
		n++
	}
	digits := n
	for n < len(r.rest) && '0' <= r.rest[n] && r.rest[n] <= '9' {
		n++
	}
	if n == digits || r.rest[digits] == '0' && n > digits+1 {
		r.ok = false
		return 0
	}
	v, err := strconv.ParseInt(string(r.rest[:n]), 10, 64)
	if err != nil {
		r.ok = false
		return 0
	}
	r.rest = r.rest[n:]
	return v
}

// Field reads key and a string that needs no escaping, returning where the
// string's text is.
func (r *Reader) Field(key string) Span {
	r.Literal(key)
	return r.plainText()
}

// OptionalField is Field for a key that may be absent: an empty Span then.
func (r *Reader) OptionalField(key string) Span {
	if !r.Optional(key) {
		return Span{}
	}
	return r.plainText()
}

// FieldString is Field, returning the text as a new string.
func (r *Reader) FieldString(key string) string {
	sp := r.Field(key)
	return string(r.line[sp.Start:sp.End])
}

// plainText reads a string encoding/json would decode to its own bytes:
// no escapes, no control characters, valid UTF-8.
func (r *Reader) plainText() Span {
	r.Literal(`"`)
	if !r.ok {
		return Span{}
	}
	start := r.offset()
	end := start
	for end < len(r.line) && r.line[end] >= 0x20 && r.line[end] != '"' && r.line[end] != '\\' {
		end++
	}
	if !utf8.Valid(r.line[start:end]) {
		r.ok = false
		return Span{}
	}
	r.rest = r.line[end:]
	r.Literal(`"`)
	return Span{start, end}
}

// Time reads key and a time of UTC as encoding/json writes it (RFC 3339
// with nanoseconds): "2006-01-02T15:04:05Z", with a fraction of a second
// of one to nine digits or none. Anything else fails, to be read by
// encoding/json: offsets, and dates time.Parse would refuse.
func (r *Reader) Time(key string) time.Time {
	r.Literal(key)
	const form = `"2006-01-02T15:04:05`
	if !r.ok || len(r.rest) < len(form) {
		r.ok = false
		return time.Time{}
	}
	b := r.rest[:len(form)]
	num := func(from, to int) int {
		n := 0
		for _, c := range b[from:to] {
			if c < '0' || c > '9' {
				r.ok = false
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(1, 5), num(6, 8), num(9, 11)
	hour, minute, second := num(12, 14), num(15, 17), num(18, 20)
	if b[0] != '"' || b[5] != '-' || b[8] != '-' || b[11] != 'T' || b[14] != ':' || b[17] != ':' {
		r.ok = false
	}
	if month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 {
		r.ok = false
	}
	rest := r.rest[len(form):]
	nanos := 0
	if len(rest) > 0 && rest[0] == '.' {
		n, scale := 1, 100_000_000
		for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' && scale > 0 {
			nanos += int(rest[n]-'0') * scale
			n, scale = n+1, scale/10
		}
		if n == 1 {
			r.ok = false // a point and no digit
		}
		rest = rest[n:]
	}
	if len(rest) < 2 || rest[0] != 'Z' || rest[1] != '"' {
		r.ok = false // an offset, or a tenth digit of fraction
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, nanos, time.UTC)
	if !r.ok || t.Day() != day { // A day past the month's end rolls over.
		r.ok = false
		return time.Time{}
	}
	r.rest = rest[2:]
	return t
}
