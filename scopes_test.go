package main

import (
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// documentedScopes reads the mini program scopes from WECHAT.md §6's scope
// list, the notes the table must follow.
func documentedScopes(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("WECHAT.md")
	if err != nil {
		t.Fatal(err)
	}
	_, list, ok := strings.Cut(string(doc), "### Scope list")
	list, _, _ = strings.Cut(list, "\n\n")
	if !ok {
		t.Fatal("WECHAT.md has no scope list")
	}
	var scopes []string
	for _, m := range regexp.MustCompile(`(?m)^\| (scope\.\w+) \|`).FindAllStringSubmatch(list, -1) {
		scopes = append(scopes, m[1])
	}
	return scopes
}

func TestScopeTableFollowsTheDocumentedList(t *testing.T) {
	documented := documentedScopes(t)
	if len(documented) < 10 {
		t.Fatalf("read only %d scopes from WECHAT.md: %v", len(documented), documented)
	}
	// WECHAT.md §6: which need something other than wx.authorize.
	wantRequest := map[string]string{
		"scope.userInfo":               requestButton,
		"scope.userLocationBackground": requestSettings,
		"scope.address":                requestNone,
		"scope.invoiceTitle":           requestNone,
		"scope.invoice":                requestNone,
	}
	var served []string
	for _, s := range scopeTable() {
		served = append(served, s.Scope)
		want, ok := wantRequest[s.Scope]
		if !ok {
			want = requestAuthorize // "All other scopes in the table can be requested with wx.authorize."
		}
		if s.Request != want {
			t.Errorf("%s: request = %q; want %q", s.Scope, s.Request, want)
		}
		if len(s.Guards) == 0 || s.Purpose == "" {
			t.Errorf("%s: guards %v, purpose %q; want both", s.Scope, s.Guards, s.Purpose)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	if !slices.Equal(served, documented) {
		t.Errorf("scopes served = %v;\nWECHAT.md lists %v", served, documented)
	}
}

func TestScopesRoute(t *testing.T) {
	// Real mode: the table is not a demo, it is served everywhere.
	a := newTestApp(t, appOptions{wechat: http.NotFoundHandler()})
	got := call(t, a.handler, http.MethodGet, "/scopes", "")
	if got.code != http.StatusOK || got.env.Status != 0 {
		t.Fatalf("GET /scopes = %d %s; want 200, status 0", got.code, got.raw)
	}
	data := dataOf[scopesData](t, got)
	if !slices.EqualFunc(data.Scopes, scopeTable(), func(a scopeData, b scopeInfo) bool { return a.Scope == b.Scope && a.Request == b.Request }) {
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

// Each scope's item of the privacy guide is the one WECHAT.md §10's table
// gives for the scope or for one of the APIs it guards, and so is each of
// the unscoped privacy interfaces.
func TestPrivacyItemsFollowTheGuide(t *testing.T) {
	doc, err := os.ReadFile("WECHAT.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "## 10. The privacy agreement")
	section, _, _ = strings.Cut(section, "\n## ")
	covers := map[string]string{} // item → its interfaces
	for _, m := range regexp.MustCompile(`(?m)^\| (收集|访问|使用)(\S+) \| (.+) \|$`).FindAllStringSubmatch(section, -1) {
		covers[m[1]+m[2]] = m[3]
	}
	if len(covers) < 10 {
		t.Fatalf("read only %d items from WECHAT.md §10: %v", len(covers), covers)
	}
	coveredBy := func(item string, names ...string) bool {
		for _, name := range names {
			if strings.Contains(covers[item], strings.Trim(name, "<>")) || strings.Contains(covers[item], name) {
				return true
			}
		}
		return false
	}
	for _, s := range scopeTable() {
		if !coveredBy(s.Privacy, append([]string{s.Scope}, s.Guards...)...) {
			t.Errorf("%s: privacy item %q does not cover it in WECHAT.md §10 (%q)", s.Scope, s.Privacy, covers[s.Privacy])
		}
	}
	for _, u := range thePrivacyGate().Unscoped {
		if !coveredBy(u.Privacy, u.Guards...) {
			t.Errorf("unscoped %v: privacy item %q does not cover them in WECHAT.md §10 (%q)", u.Guards, u.Privacy, covers[u.Privacy])
		}
	}
}
