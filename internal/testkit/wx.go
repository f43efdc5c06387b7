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
	r := httptest.NewRequestWithContext(t.Context(), "POST", "/mock/"+api, strings.NewReader(body))
	w := httptest.NewRecorder()
	fake.ServeHTTP(w, r)
	var detail map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &detail); err != nil || w.Code != 200 {
		t.Fatalf("%s(%s) = HTTP %d, %s", api, body, w.Code, w.Body)
	}
	return detail
}
