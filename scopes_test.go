package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"wxlogin/internal/scopes"
)

func TestScopesRoute(t *testing.T) {
	// Real mode: the table is not a demo, it is served everywhere.
	a := newTestApp(t, appOptions{wechat: http.NotFoundHandler()})
	got := call(t, a.handler, http.MethodGet, "/scopes", "")
	if got.code != http.StatusOK || got.env.Status != 0 {
		t.Fatalf("GET /scopes = %d %s; want 200, status 0", got.code, got.raw)
	}
	data := dataOf[scopesData](t, got)
	if !slices.EqualFunc(data.Scopes, scopes.Table(), func(a scopeData, b scopes.Scope) bool { return a.Scope == b.Scope && a.Request == b.Request }) {
		t.Errorf("GET /scopes = %+v; want the scope table", data.Scopes)
	}
	if !strings.HasPrefix(data.Source, "https://developers.weixin.qq.com/") {
		t.Errorf("source = %q; want WeChat's page", data.Source)
	}
	// The privacy layer stands in front of every scope, and of the phone
	// buttons, which have none.
	for _, s := range data.Scopes {
		if s.Privacy == "" {
			t.Errorf("%s names no item of the privacy guide", s.Scope)
		}
	}
	p := data.Privacy
	if p.EnforcedSince != "2023-10-17" || !strings.Contains(p.Rule, "agreePrivacyAuthorization") || !strings.HasPrefix(p.Source, "https://developers.weixin.qq.com/") {
		t.Errorf("privacy = %+v; want the date, the rule and WeChat's page", p)
	}
	if !slices.ContainsFunc(p.Unscoped, func(u privacyItemData) bool {
		return slices.Contains(u.Guards, `<button open-type="getRealtimePhoneNumber">`)
	}) {
		t.Errorf("privacy.unscoped = %+v; want the phone buttons", p.Unscoped)
	}
	if got := call(t, a.handler, http.MethodPost, "/scopes", ""); got.code != http.StatusMethodNotAllowed {
		t.Errorf("POST /scopes = %d; want 405", got.code)
	}
}
