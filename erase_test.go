package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/account"
)

// filesHold reports which of needles some file in dir holds, to show what
// is on the disk.
func filesHold(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err // a file the test cannot read could hold anything
		}
		for _, n := range needles {
			if bytes.Contains(data, []byte(n)) {
				rel, _ := filepath.Rel(dir, path)
				found = append(found, rel+": "+n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the data directory: %v", err)
	}
	return found
}

// An erasure whose compaction never finished (here its snapshot fails, and
// the store is closed before any other write) is finished at the next
// start: the erased user's data does not wait in the files for a
// compaction of size.
func TestAnUnfinishedErasureIsFinishedAtTheNextStart(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)
	alice, _, _ := s.login("wxshop", "o-alice-shop", "u-alice")
	if _, err := s.update(alice.ID, func(u *account.User) { u.PhoneNumber = "13912345678" }); err != nil {
		t.Fatal(err)
	}
	s.journal.InjectFault(func(step string) error {
		if step == "snapshot" {
			return fmt.Errorf("%s: %w", step, syscall.ENOSPC)
		}
		return nil
	})
	if _, err := s.erase(alice.ID); err != nil {
		t.Fatal(err)
	}
	s.journal.WaitCompactions()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if found := filesHold(t, dir, "o-alice-shop", "13912345678"); len(found) == 0 {
		t.Fatal("the failed snapshot took the data off the disk anyway: the test tests nothing")
	}

	s = openTestStore(t, dir, clock.Now)
	s.journal.WaitCompactions()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if found := filesHold(t, dir, "o-alice-shop", "u-alice", "13912345678"); len(found) > 0 {
		t.Errorf("after the next start the data directory still holds %v", found)
	}
}

// An erased user is gone from memory at once, and from the disk once the
// compaction the erasure starts is done: no byte of their openid, unionid,
// nickname or phone is left in the data directory. Their claims are kept by
// name: a returning person, with or without a unionid, is a new user who
// cannot take the same benefit again; anyone else can.
func TestErasureForgetsTheUserButNotTheirClaims(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)
	alice, _, _ := s.login("wxshop", "o-alice-shop", "u-alice")
	solo, _, _ := s.login("wxsolo", "o-alice-solo", "") // an app with no Open Platform account
	carol, _, _ := s.login("wxshop", "o-carol", "u-carol")
	for _, id := range []int64{alice.ID, solo.ID} {
		if _, err := s.update(id, func(u *account.User) { u.Nickname, u.PhoneNumber = "爱丽丝", "13912345678" }); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.claim(id, "welcome-gift"); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute)
	for _, id := range []int64{alice.ID, solo.ID} {
		gone, err := s.erase(id)
		if err != nil || gone.UserID != id || !slices.Equal(gone.ClaimsKept, []string{"welcome-gift"}) {
			t.Fatalf("erase(%d) = %+v, %v; want the user, with welcome-gift kept", id, gone, err)
		}
	}
	if _, ok := s.get(alice.ID); ok || s.count() != 1 {
		t.Errorf("after erasure get(%d) found the user, or %d users are left; want only carol", alice.ID, s.count())
	}
	if _, err := s.erase(alice.ID); err == nil {
		t.Error("a second erasure of the same user succeeded")
	}
	s.journal.WaitCompactions()
	s.Close()
	if found := filesHold(t, dir, "o-alice-shop", "o-alice-solo", "u-alice", "爱丽丝", "13912345678"); len(found) > 0 {
		t.Errorf("after the erasure's compaction the data directory still holds %v", found)
	}

	// Started again: the person comes back as a new user, whose gift is
	// taken already; carol's is not.
	s = openTestStore(t, dir, clock.Now)
	for _, app := range []struct{ appID, openID, unionID string }{{"wxshop", "o-alice-shop", "u-alice"}, {"wxsolo", "o-alice-solo", ""}} {
		back, created, err := s.login(app.appID, app.openID, app.unionID)
		if err != nil || !created || back.ID <= carol.ID {
			t.Fatalf("%s logs in again: %+v, created %v, %v; want a new user", app.appID, back, created, err)
		}
		c, taken, err := s.claim(back.ID, "welcome-gift")
		if err != nil || !taken || c.AppID != app.appID {
			t.Errorf("%s: the returning person's gift = %+v, taken %v, %v; want the claim made before the erasure", app.appID, c, taken, err)
		}
		if got := s.claimsOf(back.ID); len(got) != 1 || got[0].Name != "welcome-gift" {
			t.Errorf("%s: claims of the returning person = %+v; want the kept gift", app.appID, got)
		}
	}
	if _, taken, _ := s.claim(carol.ID, "welcome-gift"); taken {
		t.Error("carol's gift is taken: the kept claims are not per person")
	}
	// Another person's app with the same openid is not alice.
	other, _, err := s.login("wxother", "o-alice-solo", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, taken, _ := s.claim(other.ID, "welcome-gift"); taken {
		t.Error("a user of another app with the same openid met alice's kept claim")
	}
}

// DELETE /user answers what went and what was kept, and ends every token
// of the user, on every device.
func TestDeleteUserRoute(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		other := a.login(t, "wxapp", "alice") // a second device
		if got := call(t, a.handler, http.MethodPost, "/claims/welcome-gift", "", "token", token); got.code != http.StatusCreated {
			t.Fatalf("claim = %s", got.raw)
		}
		got := call(t, a.handler, http.MethodDelete, "/user", "", "token", token)
		type deleted struct {
			UserID        int64    `json:"user_id"`
			TokensRevoked int      `json:"tokens_revoked"`
			ClaimsKept    []string `json:"claims_kept"`
		}
		if d := dataOf[deleted](t, got); got.env.Status != 0 || d.UserID != 1 || d.TokensRevoked != 2 || !slices.Equal(d.ClaimsKept, []string{"welcome-gift"}) {
			t.Errorf("DELETE /user = %s; want user 1, 2 tokens revoked, welcome-gift kept", got.raw)
		}
		for _, tok := range []string{token, other} {
			if got := call(t, a.handler, http.MethodGet, "/user", "", "token", tok); got.env.Status != statusNotLoggedIn {
				t.Errorf("GET /user with a token of the deleted user = %s; want status 4", got.raw)
			}
		}
		again := a.login(t, "wxapp", "alice")
		if d := dataOf[userData](t, call(t, a.handler, http.MethodGet, "/user", "", "token", again)); d.ID == 1 || d.Nickname != "" {
			t.Errorf("after deletion alice logs in as %+v; want a new user", d)
		}
	})
}

// A token the deletion has not revoked yet (the moment between the erasure
// and the revocation) is not logged in, on every route, never a 500.
func TestATokenOfAnErasedUserIsNotLoggedIn(t *testing.T) {
	onEachStore(t, func(t *testing.T, store storeKind) {
		a, token := loggedInOn(t, store)
		if _, err := a.userBackend.Erase(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/user"}, {http.MethodPatch, "/user"}, {http.MethodDelete, "/user"}, {http.MethodPost, "/claims/welcome-gift"},
		} {
			got := send(t, a.handler, r.method, r.path, token, map[string]any{"city": "深圳"})
			if r.method == http.MethodGet || r.method == http.MethodDelete {
				got = call(t, a.handler, r.method, r.path, "", "Authorization", "Bearer "+token)
			}
			if got.code != http.StatusUnauthorized || got.env.Status != statusNotLoggedIn {
				t.Errorf("%s %s with a token of an erased user = %d %s; want 401, status 4", r.method, r.path, got.code, got.raw)
			}
		}
	})
}

// Through a real restart of a real server: a user with a profile, a phone
// number and a gift deletes their account; once wxlogin has stopped, no
// file of the data directory holds their openid, unionid, nickname or
// phone; started again, the person logs in as a new user, and their gift
// is taken.
func TestDeletedAccountIsGoneAfterARestart(t *testing.T) {
	dir := t.TempDir()
	c := startChild(t, dir)
	login := func(c *child) string {
		got := post(t, http.MethodPost, c.url+"/login", jsonCT, `{"code":"`+mockCode(t, c.url, "alice")+`"}`)
		return dataOf[loginData](t, got).Token
	}
	token := login(c)
	auth := []string{"Authorization", "Bearer " + token}
	if got := post(t, http.MethodPatch, c.url+"/user", jsonCT, `{"nickname":"爱丽丝的昵称"}`, auth...); got.env.Status != 0 {
		t.Fatalf("PATCH /user = %s", got.raw)
	}
	post(t, http.MethodPost, c.url+"/mock/wx.agreePrivacyAuthorization", jsonCT, `{"user":"alice"}`)
	var tap struct{ Code string }
	if err := json.Unmarshal([]byte(post(t, http.MethodPost, c.url+"/mock/wx.getPhoneNumber", jsonCT, `{"user":"alice"}`).raw), &tap); err != nil || tap.Code == "" {
		t.Fatalf("getPhoneNumber: %v", err)
	}
	if got := post(t, http.MethodPost, c.url+"/user/phone", jsonCT, `{"code":"`+tap.Code+`"}`, auth...); got.env.Status != 0 {
		t.Fatalf("POST /user/phone = %s", got.raw)
	}
	if got := post(t, http.MethodPost, c.url+"/claims/welcome-gift", "", "", auth...); got.code != http.StatusCreated {
		t.Fatalf("claim = %s", got.raw)
	}
	user := dataOf[userData](t, post(t, http.MethodGet, c.url+"/user", "", "", auth...))
	if got := post(t, http.MethodDelete, c.url+"/user", "", "", auth...); got.env.Status != 0 {
		t.Fatalf("DELETE /user = %s", got.raw)
	}
	c.stop(t)
	if user.PhoneNumber == "" || user.UnionID == "" {
		t.Fatalf("alice before the deletion = %+v; want a phone number and a unionid to look for", user)
	}
	if found := filesHold(t, dir, user.OpenID, user.UnionID, "爱丽丝的昵称", user.PhoneNumber); len(found) > 0 {
		t.Errorf("after deletion and a graceful stop the data directory holds %v", found)
	}

	c = startChild(t, dir)
	token = login(c)
	again := dataOf[userData](t, post(t, http.MethodGet, c.url+"/user", "", "", "token", token))
	if again.ID == user.ID || again.Nickname != "" {
		t.Errorf("after a restart alice is %+v; want a new user with nothing of the old one", again)
	}
	if got := post(t, http.MethodPost, c.url+"/claims/welcome-gift", "", "", "token", token); got.code != http.StatusConflict {
		t.Errorf("the returning person's gift = HTTP %d %s; want 409", got.code, strings.TrimSpace(got.raw))
	}
}

// FuzzParseErasureLine checks the reader of the erasure lines: it never
// panics, and a line it accepts says the same written again.
func FuzzParseErasureLine(f *testing.F) {
	f.Add([]byte(`{"person_key":"` + strings.Repeat("ab", 32) + `"}` + "\n"))
	f.Add([]byte(`{"kept":{"person":"` + strings.Repeat("cd", 32) + `","name":"welcome-gift","appid":"wxapp","user_id":5,"at":"2026-11-24T10:00:00Z"}}` + "\n"))
	f.Add([]byte(`{"erased":{"user_id":5,"at":"2026-11-24T10:00:00.123Z"}}` + "\n"))
	f.Add([]byte(`{"erased":{"user_id":0}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		l, ok, err := parseErasureLine(line)
		if !ok || err != nil {
			return
		}
		var again []byte
		switch {
		case l.personKey != nil:
			again = appendJSONLine(nil, map[string]string{"person_key": hex.EncodeToString(l.personKey)})
		case l.kept != nil:
			again = appendJSONLine(nil, map[string]*keptClaim{"kept": l.kept})
		default:
			again = erasedLine(nil, l.erased.UserID, l.erased.At)
		}
		back, ok, err := parseErasureLine(again)
		if !ok || err != nil || !bytes.Equal(back.personKey, l.personKey) || (l.kept != nil && *back.kept != *l.kept) || (l.erased != nil && *back.erased != *l.erased) {
			t.Fatalf("%q reads as %+v; written again, %q reads as %+v, %v", line, l, again, back, err)
		}
	})
}
