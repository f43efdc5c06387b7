package fastjson

import (
	"encoding/json"
	"testing"
	"time"
)

// The fast paths are checked as their callers use them too: the user
// store's records (internal/users) and the token file's lines
// (internal/tokenfile), each against encoding/json.

func TestAppendStringIsWhatEncodingJSONWrites(t *testing.T) {
	for _, s := range []string{"", "o-1", "张三 🐼", `say "hi" \o/`, "<b>&amp;</b>", "tab\there\nnul\x00", "a\u2028b\u2029c", "bad\xffbyte\xe2\x80", "\ufffd"} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString(nil, `"k":`, s); string(got) != `"k":`+string(want) {
			t.Errorf("AppendString(%q) = %s; encoding/json writes %s", s, got, want)
		}
	}
}

// FuzzAppendString checks that AppendString writes any string exactly as
// encoding/json does.
func FuzzAppendString(f *testing.F) {
	f.Add("o-1")
	f.Add("<script>&\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, "", s); string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s; encoding/json writes %s", s, got, want)
		}
	})
}

// A Reader reads an integer and a time only in the one form encoding/json
// would read the same, and fails on anything else.
func TestReaderFailsOnWhatItIsNotSureOf(t *testing.T) {
	for _, tt := range []struct {
		line string
		read func(r *Reader)
		ok   bool
	}{
		{`12`, func(r *Reader) { r.Integer() }, true},
		{`-7`, func(r *Reader) { r.Integer() }, true},
		{`0`, func(r *Reader) { r.Integer() }, true},
		{`01`, func(r *Reader) { r.Integer() }, false},
		{`-`, func(r *Reader) { r.Integer() }, false},
		{`9223372036854775808`, func(r *Reader) { r.Integer() }, false},
		{`"2026-01-01T00:00:00Z"`, func(r *Reader) { r.Time("") }, true},
		{`"2026-02-30T00:00:00Z"`, func(r *Reader) { r.Time("") }, false},
		{`"2026-01-01T00:00:00.5Z"`, func(r *Reader) { r.Time("") }, true},
		{`"2026-01-01T00:00:00.123456789Z"`, func(r *Reader) { r.Time("") }, true},
		{`"2026-01-01T00:00:00.1234567891Z"`, func(r *Reader) { r.Time("") }, false},
		{`"2026-01-01T00:00:00.Z"`, func(r *Reader) { r.Time("") }, false},
		{`"2026-01-01T00:00:00`, func(r *Reader) { r.Time("") }, false},
		{`"2026-01-01T08:00:00+08:00"`, func(r *Reader) { r.Time("") }, false},
		{`"a","b"`, func(r *Reader) { r.Field(""); r.Field(",") }, true},
		{`"a\"b"`, func(r *Reader) { r.Field("") }, false},
		{"\"a\tb\"", func(r *Reader) { r.Field("") }, false},
		{"\"\xff\"", func(r *Reader) { r.Field("") }, false},
	} {
		r := NewReader([]byte(tt.line))
		tt.read(&r)
		if r.Done() != tt.ok {
			t.Errorf("reading %s: done %v; want %v", tt.line, r.Done(), tt.ok)
		}
	}
	r := NewReader([]byte(`"2026-11-24T03:04:05Z"`))
	if got := r.Time(""); !got.Equal(time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("Time = %v; want 2026-11-24 03:04:05 UTC", got)
	}
	r = NewReader([]byte(`"2026-11-24T03:04:05.02Z"`))
	if got := r.Time(""); !got.Equal(time.Date(2026, 11, 24, 3, 4, 5, 20_000_000, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("Time = %v; want 2026-11-24 03:04:05.02 UTC", got)
	}
}
