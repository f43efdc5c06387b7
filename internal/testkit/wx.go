package testkit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// WXCall calls one of the fake WeChat's client APIs on fake, its handler,
// as a mini program would call wx.getUserInfo and friends, and returns its
// result. The user has agreed to the app's privacy guide first, as a mini
// program must have them do before any of these
// (TestPrivacyInterfacesWaitForAgreement tests the gate).
func WXCall(t testing.TB, fake http.Handler, api, body string) map[string]any {
	t.Helper()
	WXCallAsIs(t, fake, "wx.agreePrivacyAuthorization", body)
	return WXCallAsIs(t, fake, api, body)
}

// WXCallAsIs is WXCall without agreeing to the privacy guide first.
func WXCallAsIs(t testing.TB, fake http.Handler, api, body string) map[string]any {
	t.Helper()
	return ServeJSON(t, fake, "POST", "/mock/"+api, body)
}

// ServeJSON sends a request to h and returns its reply, which must be a
// JSON object with HTTP 200: how tests call the fake WeChat's APIs, the
// server's as on api.weixin.qq.com and the client's as wx.* in a mini
// program.
func ServeJSON(t testing.TB, h http.Handler, method, path, body string) map[string]any {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var reply map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil || w.Code != http.StatusOK {
		t.Fatalf("%s %s = HTTP %d, %q; want a JSON object with HTTP 200", method, path, w.Code, w.Body)
	}
	return reply
}
