package users

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/strictjson"
)

// sameRecord reports whether a and b are stored as the same line. Records
// are compared as stored because time.Time's == also compares zone pointers,
// and two readings of one "+08:00" make two zones.
func sameRecord(a, b account.User) bool {
	return bytes.Equal(appendRecord(nil, &a), appendRecord(nil, &b))
}

// decodeWithJSON reads a record line the slow way, with encoding/json, which
// defines the format.
func decodeWithJSON(line []byte) (account.User, error) {
	var u account.User
	err := strictjson.Decode(line, &u)
	return u, err
}

func TestAppendRecordIsWhatEncodingJSONWrites(t *testing.T) {
	at := time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)
	full := account.User{
		ID: 7, AppID: "wxapp", OpenID: "o-7", UnionID: "u-7", Nickname: "张三 🐼", AvatarURL: "https://example.com/a.png?x=1&y=2",
		Gender: 2, Language: "zh_CN", City: "Guangzhou", Province: "Guangdong", Country: "China",
		PhoneNumber: "+86 138 0013 8000", PurePhoneNumber: "13800138000", CountryCode: "86",
		CreatedAt: at, UpdatedAt: at.Add(time.Second), LastLoginAt: at.Add(time.Hour),
	}
	tests := []struct {
		name string
		user account.User
	}{
		{"only what is required", account.User{ID: 1, AppID: "wxapp", OpenID: "o-1", CreatedAt: at, UpdatedAt: at, LastLoginAt: at}},
		{"every field", full},
		{"quotes and backslashes", account.User{ID: 2, AppID: "a", OpenID: "o", Nickname: `say "hi" \o/`, CreatedAt: at}},
		{"HTML characters", account.User{ID: 3, AppID: "a", OpenID: "o", Nickname: "<b>&amp;</b>", CreatedAt: at}},
		{"control characters", account.User{ID: 4, AppID: "a", OpenID: "o", Nickname: "tab\there\nnul\x00", CreatedAt: at}},
		{"line and paragraph separators", account.User{ID: 5, AppID: "a", OpenID: "o", Nickname: "a\u2028b\u2029c", CreatedAt: at}},
		{"invalid UTF-8", account.User{ID: 6, AppID: "a", OpenID: "o", Nickname: "bad\xffbyte\xe2\x80", CreatedAt: at}},
		{"a replacement character", account.User{ID: 7, AppID: "a", OpenID: "o", Nickname: "\ufffd", CreatedAt: at}},
		{"negative gender", account.User{ID: 8, AppID: "a", OpenID: "o", Gender: -1, CreatedAt: at}},
		{"times with fractions and zones", account.User{
			ID: 9, AppID: "a", OpenID: "o",
			CreatedAt: at.Add(123 * time.Millisecond), UpdatedAt: at.In(time.FixedZone("CST", 8*3600)), LastLoginAt: time.Time{},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(&tt.user)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendRecord(nil, &tt.user); string(got) != string(want)+"\n" {
				t.Errorf("appendRecord = %s\nencoding/json writes %s", got, want)
			}
		})
	}
}

func TestParseUserLineReadsWhatEncodingJSONReads(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool // encoding/json accepts it, and so the store must
	}{
		{"every field", `{"id":9,"appid":"wxapp","openid":"o-9","unionid":"u-9","nickname":"张三","avatar_url":"https://example.com/a.png","gender":2,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"China","phone_number":"+86 138","pure_phone_number":"138","country_code":"86","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-02T00:00:00Z","last_login_at":"2026-01-03T00:00:00Z"}` + "\n", true},
		{"as written", `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", true},
		{"without the newline", `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}`, true},
		{"white space", ` { "id" : 1 , "appid" : "a", "openid" : "o", "created_at" : "2026-01-01T00:00:00Z" } ` + "\n", true},
		{"fields in another order", `{"openid":"o","appid":"a","id":1,"created_at":"2026-01-01T00:00:00Z"}`, true},
		{"escaped strings", `{"id":1,"appid":"a","openid":"o","nickname":"\u5f20\"\\","created_at":"2026-01-01T00:00:00Z"}`, true},
		{"an empty optional field", `{"id":1,"appid":"a","openid":"o","unionid":"","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", true},
		{"a fraction of a second", `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00.5Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", true},
		{"a zone offset", `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T08:00:00+08:00","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", true},
		{"invalid UTF-8, replaced", "{\"id\":1,\"appid\":\"a\",\"openid\":\"o\xff\",\"created_at\":\"2026-01-01T00:00:00Z\",\"updated_at\":\"2026-01-01T00:00:00Z\",\"last_login_at\":\"2026-01-01T00:00:00Z\"}\n", true},
		{"an unknown field", `{"id":1,"appid":"a","openid":"o","admin":true,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", false},
		{"February 30th", `{"id":1,"appid":"a","openid":"o","created_at":"2026-02-30T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", false},
		{"a leap second", `{"id":1,"appid":"a","openid":"o","created_at":"2026-06-30T12:00:60Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", false},
		{"hour 24", `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T24:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", false},
		{"a leading zero", `{"id":01,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", false},
		{"an id past int64", `{"id":9223372036854775808,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n", false},
		{"a raw control character", "{\"id\":1,\"appid\":\"a\",\"openid\":\"o\t\",\"created_at\":\"2026-01-01T00:00:00Z\",\"updated_at\":\"2026-01-01T00:00:00Z\",\"last_login_at\":\"2026-01-01T00:00:00Z\"}\n", false},
		{"two records on a line", `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}{"id":2}` + "\n", false},
		{"data after the newline", `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n" + `{"id":2}`, false},
		{"cut short", `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, jsonErr := decodeWithJSON([]byte(tt.line))
			if (jsonErr == nil) != tt.ok {
				t.Fatalf("encoding/json: %v; the test expects it to accept the line: %v", jsonErr, tt.ok)
			}
			got, err := parseUserLine([]byte(tt.line))
			if (err == nil) != tt.ok {
				t.Fatalf("parseUserLine(%s) = %v; want it to accept the line: %v", tt.line, err, tt.ok)
			}
			if tt.ok && !sameRecord(*got, want) {
				t.Errorf("parseUserLine(%s) = %+v\nencoding/json reads %+v", tt.line, *got, want)
			}
		})
	}
}

// The fast path is taken for every line the store writes, and it makes two
// allocations per record: the record, and one string holding its text.
func TestReadPlainRecordAllocatesTwice(t *testing.T) {
	at := time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)
	line := appendRecord(nil, &account.User{
		ID: 42, AppID: "wxapp", OpenID: benchOpenID(42), UnionID: fakewechat.UnionID("42"), Nickname: "张三",
		AvatarURL: "https://example.com/a.png", Gender: 1, CreatedAt: at, UpdatedAt: at, LastLoginAt: at,
	})
	if _, ok := readPlainRecord(line); !ok {
		t.Fatalf("readPlainRecord(%s) fell back to encoding/json", line)
	}
	if n := testing.AllocsPerRun(100, func() { readPlainRecord(line) }); n > 2 {
		t.Errorf("readPlainRecord makes %v allocations; want 2", n)
	}
}

// FuzzParseUserLine checks that no stored line, however damaged, panics the
// parser; that it reads every line exactly as encoding/json does; and that
// every record it accepts survives a write and re-read.
func FuzzParseUserLine(f *testing.F) {
	f.Add([]byte(`{"id":1,"appid":"wxapp","openid":"o-1","unionid":"u","nickname":"张三","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":1,"appid":"wxapp","openid":"o-1","gender":2,"country_code":"86","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n"))
	f.Add([]byte(`{"id":-1}`))
	f.Add([]byte(`{"id":1,"id":2}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		u, err := parseUserLine(line)
		if want, jsonErr := decodeWithJSON(line); jsonErr != nil && err == nil {
			t.Fatalf("parseUserLine accepted %q, which encoding/json refuses: %v", line, jsonErr)
		} else if err == nil && !sameRecord(*u, want) {
			t.Fatalf("parseUserLine(%q) = %+v\nencoding/json reads %+v", line, *u, want)
		}
		if err != nil {
			return
		}
		stored := appendRecord(nil, u)
		again, err := parseUserLine(stored)
		if err != nil {
			t.Fatalf("a record the parser accepted does not re-parse: %v", err)
		}
		if restored := appendRecord(nil, again); !bytes.Equal(restored, stored) {
			t.Fatalf("record changed in a round trip: %s became %s", stored, restored)
		}
	})
}

// FuzzAppendRecord checks that appendRecord writes exactly what
// encoding/json writes, for any strings, and that it reads back the same.
func FuzzAppendRecord(f *testing.F) {
	f.Add("o-1", "u-1", "张三", "https://example.com/a.png", "86", 1, int64(1_795_000_000), int64(0))
	f.Add("o\"\\", "", "<script>&\u2028", "\xff", "", -3, int64(0), int64(999_999_999))
	f.Fuzz(func(t *testing.T, openID, unionID, nickname, avatar, countryCode string, gender int, unix, nanos int64) {
		at := time.Unix(unix%253_402_300_800, nanos%1_000_000_000).UTC() // years 1970 to 9999
		u := account.User{
			ID: 1, AppID: "wxapp", OpenID: openID, UnionID: unionID, Nickname: nickname, AvatarURL: avatar,
			Gender: gender, City: strings.ToUpper(nickname), CountryCode: countryCode,
			CreatedAt: at, UpdatedAt: at.Truncate(time.Second), LastLoginAt: at,
		}
		want, err := json.Marshal(&u)
		if err != nil {
			t.Skip(err)
		}
		line := appendRecord(nil, &u)
		if string(line) != string(want)+"\n" {
			t.Fatalf("appendRecord = %s\nencoding/json writes %s", line, want)
		}
		fast, fastOK := readPlainRecord(line)
		slow, err := decodeWithJSON(line)
		if err != nil {
			t.Fatalf("encoding/json cannot read back %s: %v", line, err)
		}
		if fastOK && *fast != slow {
			t.Fatalf("readPlainRecord(%s) = %+v\nencoding/json reads %+v", line, *fast, slow)
		}
	})
}
