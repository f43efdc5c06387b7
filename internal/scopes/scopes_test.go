package scopes

import (
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
	doc, err := os.ReadFile("../../WECHAT.md")
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
		"scope.userInfo":               RequestButton,
		"scope.userLocationBackground": RequestSettings,
		"scope.address":                RequestNone,
		"scope.invoiceTitle":           RequestNone,
		"scope.invoice":                RequestNone,
	}
	var served []string
	for _, s := range Table() {
		served = append(served, s.Scope)
		want, ok := wantRequest[s.Scope]
		if !ok {
			want = RequestAuthorize // "All other scopes in the table can be requested with wx.authorize."
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

// Each scope's item of the privacy guide is the one WECHAT.md §10's table
// gives for the scope or for one of the APIs it guards, and so is each of
// the unscoped privacy interfaces.
func TestPrivacyItemsFollowTheGuide(t *testing.T) {
	doc, err := os.ReadFile("../../WECHAT.md")
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
	for _, s := range Table() {
		if !coveredBy(s.Privacy, append([]string{s.Scope}, s.Guards...)...) {
			t.Errorf("%s: privacy item %q does not cover it in WECHAT.md §10 (%q)", s.Scope, s.Privacy, covers[s.Privacy])
		}
	}
	for _, u := range Privacy().Unscoped {
		if !coveredBy(u.Privacy, u.Guards...) {
			t.Errorf("unscoped %v: privacy item %q does not cover them in WECHAT.md §10 (%q)", u.Guards, u.Privacy, covers[u.Privacy])
		}
	}
}
