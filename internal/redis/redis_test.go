package redis

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, []string{"SET", "k", "a\r\nb", ""}))
	want := "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n$0\r\n\r\n"
	if got != want {
		t.Errorf("appendCommand = %q; want %q", got, want)
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name, in string
		want     any
		bad      bool // an error of the connection
	}{
		{"simple string", "+OK\r\n", "OK", false},
		{"error", "-ERR wrong\r\n", Error("ERR wrong"), false},
		{"integer", ":-42\r\n", int64(-42), false},
		{"bulk", "$5\r\nhe\r\no\r\n", "he\r\no", false},
		{"empty bulk", "$0\r\n\r\n", "", false},
		{"nil bulk", "$-1\r\n", nil, false},
		{"nil array", "*-1\r\n", nil, false},
		{"array", "*3\r\n:1\r\n$1\r\na\r\n*1\r\n+x\r\n", []any{int64(1), "a", []any{"x"}}, false},
		{"empty", "", nil, true},
		{"no CRLF", "+OK\n", nil, true},
		{"bad integer", ":1x\r\n", nil, true},
		{"bad length", "$x\r\n", nil, true},
		{"length below -1", "$-2\r\n", nil, true},
		{"bulk over the limit", "$" + strconv.Itoa(maxBulk+1) + "\r\n", nil, true},
		{"array over the limit", "*" + strconv.Itoa(maxArray+1) + "\r\n", nil, true},
		{"bulk cut short", "$5\r\nab", nil, true},
		{"bulk not ended by CRLF", "$2\r\nabcd", nil, true},
		{"array cut short", "*2\r\n:1\r\n", nil, true},
		{"too deep", strings.Repeat("*1\r\n", maxDepth+1) + ":1\r\n", nil, true},
		{"unknown type", "%1\r\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
			if tt.bad {
				if err == nil {
					t.Errorf("readReply(%q) = %#v; want an error", tt.in, got)
				}
				return
			}
			if err != nil || fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tt.want) {
				t.Errorf("readReply(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzReadReply checks that no reply from a server panics the parser
// or makes it allocate past its limits, and that replies read back as
// written.
func FuzzReadReply(f *testing.F) {
	for _, seed := range []string{"+OK\r\n", "-MOVED 3999 127.0.0.1:6381\r\n", ":1\r\n", "$3\r\nabc\r\n", "*2\r\n*3\r\n:0\r\n:5460\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n$-1\r\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		v, err := readReply(r)
		if err != nil {
			return
		}
		if s, ok := v.(string); ok && len(s) > len(in) {
			t.Fatalf("readReply(%q) made a string of %d bytes", in, len(s))
		}
	})
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		name, url string
		want      Config // the fields compared: Addrs, User, Password, DB, Cluster, PoolSize, TLS
		wantTLS   bool
		err       string // a part of the error wanted
	}{
		{"host only", "redis://localhost", Config{Addrs: []string{"localhost:6379"}, PoolSize: 8}, false, ""},
		{"everything", "rediss://wxlogin:s3cret@example:6380/2?pool=3&timeout=1s",
			Config{Addrs: []string{"example:6380"}, User: "wxlogin", Password: "s3cret", DB: 2, PoolSize: 3}, true, ""},
		{"password only", "redis://:s3cret@127.0.0.1:7000", Config{Addrs: []string{"127.0.0.1:7000"}, Password: "s3cret", PoolSize: 8}, false, ""},
		{"cluster seeds", "redis://127.0.0.1:7000?cluster=true&addr=127.0.0.1:7001&addr=[::1]",
			Config{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001", "[::1]:6379"}, Cluster: true, PoolSize: 8}, false, ""},
		{"other scheme", "http://:s3cret@127.0.0.1", Config{}, false, "redis:// or rediss://"},
		{"no host", "redis://", Config{}, false, "no host"},
		{"bad db", "redis://:s3cret@127.0.0.1/x", Config{}, false, "database number"},
		{"cluster with a db", "redis://127.0.0.1/1?cluster=1", Config{}, false, "database 0 only"},
		{"bad pool", "redis://:s3cret@127.0.0.1?pool=0", Config{}, false, "pool="},
		{"bad timeout", "redis://127.0.0.1?timeout=soon", Config{}, false, "timeout="},
		{"not a URL", "redis://:s3cret@[::1", Config{}, false, "not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseURL(tt.url)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseURL(%q) = %v; want an error saying %q", tt.url, err, tt.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q) = %v", tt.url, err)
			}
			if fmt.Sprint(got.Addrs) != fmt.Sprint(tt.want.Addrs) || got.User != tt.want.User || got.Password != tt.want.Password ||
				got.DB != tt.want.DB || got.Cluster != tt.want.Cluster || got.PoolSize != tt.want.PoolSize || (got.TLS != nil) != tt.wantTLS {
				t.Errorf("ParseURL(%q) = %+v; want %+v, TLS %v", tt.url, got, tt.want, tt.wantTLS)
			}
		})
	}
}

// The cluster spec's vectors: CRC16 of "123456789" is 0x31C3; keys with
// the same hash tag share a slot; an empty {} is no tag.
func TestSlot(t *testing.T) {
	if got := crc16("123456789"); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#x; want 0x31c3", got)
	}
	tests := []struct{ key, sameAs string }{
		{"{user1000}.following", "{user1000}.followers"},
		{"{user1000}.following", "user1000"},
		{"foo{}{bar}", "foo{}{bar}"},
		{"foo{{bar}}zap", "{bar"},
		{"foo{bar}{zap}", "bar"},
	}
	for _, tt := range tests {
		if Slot(tt.key) != Slot(tt.sameAs) {
			t.Errorf("Slot(%q) = %d, Slot(%q) = %d; want the same", tt.key, Slot(tt.key), tt.sameAs, Slot(tt.sameAs))
		}
	}
	if got := Slot("foo"); got != 12182 {
		t.Errorf("Slot(foo) = %d; want 12182 (CLUSTER KEYSLOT foo)", got)
	}
	if Slot("foo{}{bar}") == Slot("bar") {
		t.Error("an empty {} was taken for a hash tag")
	}
}

func TestCommandKey(t *testing.T) {
	tests := []struct {
		cmd  []string
		want string
	}{
		{[]string{"GET", "k"}, "k"},
		{[]string{"evalsha", "abc", "2", "k1", "k2", "a"}, "k1"},
		{[]string{"EVAL", "return 1", "0"}, ""},
		{[]string{"PING"}, ""},
		{[]string{"CONFIG", "GET", "appendonly"}, ""},
	}
	for _, tt := range tests {
		if got := commandKey(tt.cmd); got != tt.want {
			t.Errorf("commandKey(%q) = %q; want %q", tt.cmd, got, tt.want)
		}
	}
}
