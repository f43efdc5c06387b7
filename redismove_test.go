package main

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/config"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/testkit"
	"wxlogin/internal/users"
)

// A data directory moved into Redis and back out is the store it was,
// line for line: users, a profile and phone, claims, an erased user and
// the claim kept of them; each move says the counts on both sides agree.
// A wxlogin on the Redis knows the users meanwhile: a returning user is
// not new, a gift taken stays taken, also for the person who was erased.
func TestMovingAStoreToRedisAndBack(t *testing.T) {
	dir := t.TempDir()
	files, err := users.Open(dir, account.Meta{Mode: account.ModeMock, AppIDs: []string{config.MockAppID}}, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		if _, _, err := files.Login(config.MockAppID, fakewechat.OpenID(config.MockAppID, name), fakewechat.UnionID(name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := files.Update(1, func(u *account.User) { u.Nickname, u.PhoneNumber, u.Gender = "阿丽", "13800000000", 2 }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   int64
		name string
	}{{1, "welcome-gift"}, {1, "coupon"}, {2, "welcome-gift"}, {3, "welcome-gift"}} {
		if _, _, err := files.Claim(c.id, c.name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := files.Erase(3); err != nil {
		t.Fatal(err)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := tool(t, "export", "-data", dir)
	if n := strings.Count(before, "\n"); err != nil || n != 9 {
		t.Fatalf("export = %v, %d lines:\n%s\nwant 9: 3 users, an erasure, the person key, 3 claims and a kept one", err, n, before)
	}

	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	url := "redis://" + srv.Addr
	out, err := tool(t, "to-redis", "-data", dir, "-redis", url)
	if err != nil || !strings.Contains(out, "Redis: 3 users (3 persons) and 4 claims") || !strings.Contains(out, "ok: the counts agree") {
		t.Fatalf("to-redis = %v:\n%s", err, out)
	}
	if out, err := tool(t, "to-redis", "-data", dir, "-redis", url); err == nil || !strings.Contains(out+err.Error(), "already holds users") {
		t.Errorf("to-redis into a Redis that holds users = %v:\n%s; want it refused", err, out)
	}
	back := filepath.Join(t.TempDir(), "back")
	if out, err := tool(t, "from-redis", "-data", back, "-redis", url); err != nil || !strings.Contains(out, "ok: the counts agree") {
		t.Fatalf("from-redis = %v:\n%s", err, out)
	}
	after, err := tool(t, "export", "-data", back)
	if err != nil {
		t.Fatal(err)
	}
	if b, a := sortedLines(before), sortedLines(after); !slices.Equal(b, a) {
		t.Errorf("moved to Redis and back, the store changed:\nbefore:\n%s\nafter:\n%s", strings.Join(b, "\n"), strings.Join(a, "\n"))
	}

	s := startServer(t, map[string]string{"WXLOGIN_REDIS": url})
	for _, tt := range []struct {
		user    string
		newUser bool
	}{{"alice", false}, {"carol", true}} {
		got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, tt.user)+`"}`)
		d := dataOf[loginData](t, got)
		if got.env.Status != 0 || d.NewUser != tt.newUser || (tt.user == "alice" && d.UserID != 1) {
			t.Errorf("login of %s on the Redis moved into = %s; want new_user %v", tt.user, got.raw, tt.newUser)
		}
		if got := post(t, http.MethodPost, s.url+"/claims/welcome-gift", "", "", "token", d.Token); got.code != http.StatusConflict {
			t.Errorf("%s's welcome gift on the Redis moved into = %s; want 409, taken before the move", tt.user, got.raw)
		}
	}
}

// sortedLines is text's lines in order, for comparing stores whose lines
// may come in another order.
func sortedLines(text string) []string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	slices.Sort(lines)
	return lines
}
