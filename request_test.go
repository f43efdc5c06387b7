package main

import (
	"net/http"
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
		got, err := tokenFromRequest(h)
		if err != nil || got != strings.TrimSpace(got) {
			t.Fatalf("tokenFromRequest = %q, %v; want no surrounding space, and no error for one header of each", got, err)
		}
	})
}

// A body that names a member twice is refused, whatever the route, in
// JSON and in forms: the handler must not pick one of two answers.
func TestDuplicateMembersAreRefused(t *testing.T) {
	a, token := loggedIn(t)
	for _, tt := range []struct {
		method, path, contentType, body string
	}{
		{"POST", "/login", jsonCT, `{"code":"a","code":"b"}`},
		{"POST", "/login", "application/x-www-form-urlencoded", "code=a&code=b"},
		{"PATCH", "/user", jsonCT, `{"nickname":"a","nickName":"b"}`},
		{"POST", "/user/userinfo", jsonCT, `{"rawData":"{}","signature":"x","rawData":"{}"}`},
		{"POST", "/user/phone", jsonCT, `{"code":"a","code":"b"}`},
	} {
		got := call(t, a.handler, tt.method, tt.path, tt.body, "Content-Type", tt.contentType, "token", token)
		if got.code != http.StatusBadRequest || got.env.Status != statusBadRequest || !strings.Contains(got.env.Msg, "不止一次") {
			t.Errorf("%s %s %s = %d %s; want 400, status 1, naming the repeated member", tt.method, tt.path, tt.body, got.code, got.raw)
		}
	}
	if got := call(t, a.handler, "GET", "/user", "", "Authorization", "Bearer "+token, "token", token); got.env.Status != statusOK {
		t.Errorf("GET /user with the token in both headers = %s; want it to pass, as the headers differ", got.raw)
	}
}
