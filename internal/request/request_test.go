package request

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzTokenFromRequest checks that no header values panic token extraction.
func FuzzTokenFromRequest(f *testing.F) {
	f.Add("Bearer abc", "")
	f.Add("", "abc")
	f.Add("bearer", " ")
	f.Fuzz(func(t *testing.T, authorization, token string) {
		h := http.Header{}
		h.Set("Authorization", authorization)
		h.Set("token", token)
		got, err := Token(h)
		if err != nil || got != strings.TrimSpace(got) {
			t.Fatalf("Token = %q, %v; want no surrounding space, and no error for one header of each", got, err)
		}
	})
}

// A body that cannot be read is an *Error of its kind, saying what is
// wrong without the server's own words around it, and keeping the cause for
// the log.
func TestErrorsSayWhatIsWrong(t *testing.T) {
	read := func(contentType, body string, limit int64) error {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, limit)
		var code string
		return ReadStringFields(r, map[string]*string{"code": &code})
	}
	tests := []struct {
		name, contentType, body string
		limit                   int64
		kind                    Kind
		what                    string
		cause                   bool
	}{
		{"too large", "application/json", `{"code":"` + strings.Repeat("x", 100) + `"}`, 64, TooLarge, "", true},
		{"too large as a form", "application/x-www-form-urlencoded", "code=" + strings.Repeat("x", 100), 64, TooLarge, "", true},
		{"repeated member", "", `{"code":"a","code":"b"}`, MaxBodyBytes, Malformed, `字段 "code" 出现了不止一次`, false},
		{"repeated form field", "application/x-www-form-urlencoded", "code=a&code=b", MaxBodyBytes, Malformed, "code 出现了不止一次", false},
		{"not a string", "application/json", `{"code":1}`, MaxBodyBytes, Malformed, "code 应为字符串", true},
		{"trailing data", "application/json", `{"code":"a"}x`, MaxBodyBytes, Malformed, "请求体在 JSON 对象之后还有内容", false},
		{"other media type", "text/plain", "code", MaxBodyBytes, Malformed, "Content-Type 应为 application/json 或 application/x-www-form-urlencoded", false},
		{"bad Content-Type", "application/", "", MaxBodyBytes, Malformed, "无法解析 Content-Type", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := read(tt.contentType, tt.body, tt.limit)
			var e *Error
			if !errors.As(err, &e) || e.Kind != tt.kind || e.What != tt.what || (e.Err != nil) != tt.cause {
				t.Errorf("ReadStringFields(%s) = %#v; want kind %d, what %q, a cause %v", tt.body, err, tt.kind, tt.what, tt.cause)
			}
		})
	}
	if _, err := Token(http.Header{"Authorization": {"Bearer a", "Bearer b"}}); err == nil || err.(*Error).Kind != Malformed {
		t.Errorf("Token of two Authorization headers = %v; want Malformed", err)
	}
}

// FuzzPlainStringFields holds the login body's fast path to the full
// decoder: whatever body it reads, the decoder reads too, to the same
// values; a body it refuses changes nothing.
func FuzzPlainStringFields(f *testing.F) {
	for _, seed := range []string{`{"code":"0a3Xkq000abc","appid":"wx1"}`, `{}`, `{"code":"a","code":"b"}`,
		`{"code":"a\"b"}`, `{"code":null}`, `{"code": "a"}`, `{"code":"a"}x`, `{"other":"1","code":"c"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fastCode, fastApp string
		if !plainStringFields(body, map[string]*string{"code": &fastCode, "appid": &fastApp}) {
			if fastCode != "" || fastApp != "" {
				t.Errorf("%q: refused, yet set code %q, appid %q", body, fastCode, fastApp)
			}
			return
		}
		var code, app string
		if err := decodeStringFields(body, map[string]*string{"code": &code, "appid": &app}); err != nil {
			t.Fatalf("%q: read by the fast path, refused by the decoder: %v", body, err)
		}
		if fastCode != code || fastApp != app {
			t.Errorf("%q: code %q, appid %q by the fast path; %q, %q by the decoder", body, fastCode, fastApp, code, app)
		}
	})
}

// BenchmarkReadStringFields reads a login's body as wx.request sends it.
func BenchmarkReadStringFields(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(`{"code":"0a3Xkq000abcdefghijklmnopqrstuv"}`))
		r.Header.Set("Content-Type", "application/json")
		var code, app string
		if err := ReadStringFields(r, map[string]*string{"code": &code, "appid": &app}); err != nil || code == "" {
			b.Fatal(err)
		}
	}
}
