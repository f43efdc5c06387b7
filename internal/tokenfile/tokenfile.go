// Package tokenfile is the file that carries the token store across a
// graceful restart: Save writes the live tokens and the session keys they
// use when wxlogin stops, and Read reads them back at the next start. A
// kill -9 loses them, which costs each phone a silent wx.login. What the
// values mean, and what to keep of them, is the token store's: it turns
// its monotonic clock into the file's wall times and back, drops a file it
// cannot read whole, and removes the file once it has read it.
//
// The file is JSON lines, written and read as a stream: as one document,
// a million tokens took far too long and too much memory to read
// (BENCHMARKS.md, RSS). Times are Unix nanoseconds, as the saving process's
// wall clock read them.
//
//	{"format":"wxlogin-tokens","version":2,"saved_at":"…"}
//	{"user_id":1,"appid":"…","openid":"…","session_key":"…","stored_ns":…}    one per user with a live token, first
//	{"sha256":"…","user_id":1,"issued_ns":…,"last_used_ns":…}    one per live token
//
// It holds token hashes, never tokens, but it does hold session keys: it
// is written 0600, and Read's errors name the line and say what is wrong
// with it without quoting it.
package tokenfile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"strconv"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/durable"
	"wxlogin/internal/fastjson"
	"wxlogin/internal/strictjson"
)

// Name is the token file's name in the data directory.
const Name = "tokens.json"

// The format the header names.
const (
	format  = "wxlogin-tokens"
	version = 2
)

// ErrOldFormat is a token file written by a wxlogin before version 2.
var ErrOldFormat = errors.New("written by an older wxlogin")

// header is the file's first line.
type header struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	SavedAt time.Time `json:"saved_at"`
}

// SessionKey is a user's session_key, as a line of the file holds it.
type SessionKey struct {
	UserID     int64  `json:"user_id"`
	AppID      string `json:"appid"`  // checked against the user store, so that
	OpenID     string `json:"openid"` // a token never speaks for another user
	SessionKey string `json:"session_key"`
	StoredAt   int64  `json:"stored_ns"` // Unix nanoseconds
}

// Token is a live token, by its hash: whose it is and when it was issued
// and last used, in Unix nanoseconds.
type Token struct {
	Hash       account.TokenHash
	UserID     int64
	IssuedAt   int64
	LastUsedAt int64
}

// tokenLine is a Token as a line of the file holds it.
type tokenLine struct {
	SHA256     string `json:"sha256"` // the hash, in base64url
	UserID     int64  `json:"user_id"`
	IssuedAt   int64  `json:"issued_ns"`
	LastUsedAt int64  `json:"last_used_ns"`
}

// tokenLinePrefix starts every token line; a session key line starts with "user_id".
var tokenLinePrefix = []byte(`{"sha256":`)

// Save writes a token file to path atomically, saved at savedAt: keys,
// then tokens. Every token's user must have its key among keys.
func Save(path string, savedAt time.Time, keys iter.Seq[SessionKey], tokens iter.Seq[Token]) error {
	return durable.WriteFile(path, func(w *os.File) error {
		// A write error sticks in bw, and Flush returns it.
		bw := bufio.NewWriterSize(w, 1<<20)
		h, _ := json.Marshal(header{Format: format, Version: version, SavedAt: savedAt.UTC()}) // Cannot fail: plain data.
		bw.Write(append(h, '\n'))
		var line []byte
		for k := range keys {
			line = appendSessionKey(line[:0], k)
			bw.Write(line)
		}
		for t := range tokens {
			line = appendTokenLine(line[:0], tokenLine{
				SHA256: base64.RawURLEncoding.EncodeToString(t.Hash[:]), UserID: t.UserID, IssuedAt: t.IssuedAt, LastUsedAt: t.LastUsedAt,
			})
			bw.Write(line)
		}
		return bw.Flush()
	})
}

// Read reads a token file from r, name being where it is, for errors: it
// calls savedAt with the header's time, then key or token for each line, in
// the file's order. It stops at the first line it cannot read, returning an
// error that names the file and the line and says what is wrong, never
// quoting the file, which holds session keys; what it read before may be
// from a file cut short or damaged.
func Read(r io.Reader, name string, savedAt func(time.Time), key func(SessionKey), token func(Token)) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, io.EOF) && len(line) == 0 && lineNo > 1:
			return nil
		case errors.Is(err, io.EOF) && len(line) == 0:
			return fmt.Errorf("%s: empty, not a wxlogin token file", name)
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%s:%d: cut short: the line has no end", name, lineNo)
		case errors.Is(err, bufio.ErrBufferFull):
			return fmt.Errorf("%s:%d: not a wxlogin token file: a line longer than %d bytes", name, lineNo, br.Size())
		case err != nil:
			return fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		switch {
		case lineNo == 1:
			if string(line) == "{\n" {
				// Version 1 was one indented JSON document, its format second.
				if next, _ := br.ReadSlice('\n'); string(next) == ` "format": "wxlogin-tokens",`+"\n" {
					return fmt.Errorf("%s: %w", name, ErrOldFormat)
				}
			}
			var h header
			if err := strictjson.Decode(line, &h); err != nil {
				return fmt.Errorf("%s:1: not a wxlogin token file: %s", name, jsonFault(err))
			}
			if h.Format != format || h.Version != version {
				return fmt.Errorf("%s:1: not a wxlogin token file of version %d: its header names another format or version", name, version)
			}
			if y := h.SavedAt.Year(); y < 2000 || y > 2200 {
				return fmt.Errorf("%s:1: its saved_at is not a time a token file was saved", name)
			}
			savedAt(h.SavedAt)
		case bytes.HasPrefix(line, tokenLinePrefix):
			t, err := parseTokenLine(line)
			if err != nil {
				return fmt.Errorf("%s:%d: not a token line: %s", name, lineNo, jsonFault(err))
			}
			raw, err := base64.RawURLEncoding.DecodeString(t.SHA256)
			if err != nil || len(raw) != sha256.Size {
				return fmt.Errorf("%s:%d: its token hash is not a base64url SHA-256", name, lineNo)
			}
			token(Token{Hash: account.TokenHash(raw), UserID: t.UserID, IssuedAt: t.IssuedAt, LastUsedAt: t.LastUsedAt})
		default:
			k, err := parseSessionKey(line)
			if err != nil {
				return fmt.Errorf("%s:%d: not a session key line: %s", name, lineNo, jsonFault(err))
			}
			key(k)
		}
	}
}

// jsonFault says what encoding/json found wrong with a line of the token
// file, without the text it quotes: the line may hold a session key, and
// the error goes to the log.
func jsonFault(err error) string {
	var syntax *json.SyntaxError
	var wrongType *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("not JSON at byte %d", syntax.Offset)
	case errors.As(err, &wrongType):
		return fmt.Sprintf("a value of the wrong type for %s", wrongType.Field)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "its JSON is cut short"
	case errors.Is(err, strictjson.ErrTrailingData):
		return "data after its JSON value"
	default:
		return "a member or value wxlogin does not write"
	}
}

// The lines are written and read without reflection, on fastjson's fast
// path; encoding/json defines their format (FuzzTokenFileLines).

func appendSessionKey(buf []byte, k SessionKey) []byte {
	buf = strconv.AppendInt(append(buf, `{"user_id":`...), k.UserID, 10)
	buf = fastjson.AppendString(buf, `,"appid":`, k.AppID)
	buf = fastjson.AppendString(buf, `,"openid":`, k.OpenID)
	buf = fastjson.AppendString(buf, `,"session_key":`, k.SessionKey)
	buf = strconv.AppendInt(append(buf, `,"stored_ns":`...), k.StoredAt, 10)
	return append(buf, "}\n"...)
}

func appendTokenLine(buf []byte, t tokenLine) []byte {
	buf = fastjson.AppendString(buf, `{"sha256":`, t.SHA256)
	buf = strconv.AppendInt(append(buf, `,"user_id":`...), t.UserID, 10)
	buf = strconv.AppendInt(append(buf, `,"issued_ns":`...), t.IssuedAt, 10)
	buf = strconv.AppendInt(append(buf, `,"last_used_ns":`...), t.LastUsedAt, 10)
	return append(buf, "}\n"...)
}

// parseSessionKey reads a session key line.
func parseSessionKey(line []byte) (SessionKey, error) {
	return parseLine(line, "session key", func(r *fastjson.Reader) (k SessionKey) {
		r.Literal(`{"user_id":`)
		k.UserID = r.Integer()
		k.AppID = r.FieldString(`,"appid":`)
		k.OpenID = r.FieldString(`,"openid":`)
		k.SessionKey = r.FieldString(`,"session_key":`)
		r.Literal(`,"stored_ns":`)
		k.StoredAt = r.Integer()
		return k
	})
}

// parseTokenLine reads a token line.
func parseTokenLine(line []byte) (tokenLine, error) {
	return parseLine(line, "token", func(r *fastjson.Reader) (t tokenLine) {
		t.SHA256 = r.FieldString(`{"sha256":`)
		r.Literal(`,"user_id":`)
		t.UserID = r.Integer()
		r.Literal(`,"issued_ns":`)
		t.IssuedAt = r.Integer()
		r.Literal(`,"last_used_ns":`)
		t.LastUsedAt = r.Integer()
		return t
	})
}

// parseLine reads one line of the file with read, which expects the
// members in the order Save writes them, up to the closing brace; a line
// it is unsure of goes to encoding/json, which defines the format. what
// names the kind of line in an error.
func parseLine[T any](line []byte, what string, read func(r *fastjson.Reader) T) (T, error) {
	r := fastjson.NewReader(line)
	v := read(&r)
	r.Literal("}\n")
	if r.Done() {
		return v, nil
	}
	var strict T
	if err := strictjson.Decode(line, &strict); err != nil {
		return strict, fmt.Errorf("not a %s: %w", what, err)
	}
	return strict, nil
}
