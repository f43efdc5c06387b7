package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wxlogin/internal/testkit"
)

// testdata/before-issue-24 holds a store that the wxlogin before its move
// into packages (commit d3c1ac3) wrote in mock mode, in a data directory
// and in a Redis (its AOF): alice (user 1, nickname 爱丽丝, who took
// welcome-gift), bob (2), carol (3, who took welcome-gift and then deleted
// her account) and dave (4). A wxlogin of today serves it as that one did:
// every user logs in as the same user, the gift stays taken, and carol
// comes back as a new user whose gift is still taken, under a new id.
func TestAStoreWrittenBeforeIsServedAsItWas(t *testing.T) {
	t.Run("data directory", func(t *testing.T) {
		dir := copyFixture(t, "testdata/before-issue-24/files", 0o700, 0o600)
		if out, err := tool(t, "check", "-data", dir); err != nil {
			t.Fatalf("wxlogin check of the store written before = %v:\n%s", err, out)
		}
		servedAsItWas(t, startChild(t, dir))
	})
	t.Run("redis", func(t *testing.T) {
		aof := copyFixture(t, "testdata/before-issue-24/redis", 0o755, 0o644)
		redis := testkit.StartRedis(t, "--dir", filepath.Dir(aof), "--appenddirname", filepath.Base(aof),
			"--appendonly", "yes", "--appendfsync", "always")
		servedAsItWas(t, startProcess(t, []string{"WXLOGIN_REDIS=redis://" + redis.Addr}, "-addr", "127.0.0.1:0", "-login-rate", "0"))
	})
}

// copyFixture copies the files of the fixture directory from to a new
// directory, with the modes given, and returns it.
func copyFixture(t *testing.T, from string, dirMode, fileMode os.FileMode) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), filepath.Base(from))
	if err := os.Mkdir(dir, dirMode); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, fileMode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// servedAsItWas checks that the server at c serves the fixture's users as
// the wxlogin that wrote them did.
func servedAsItWas(t *testing.T, c *child) {
	t.Helper()
	login := func(name string) (token string, id int64, created bool) {
		t.Helper()
		got := post(t, http.MethodPost, c.url+"/login", jsonCT, `{"code":"`+mockCode(t, c.url, name)+`"}`)
		data := dataOf[struct {
			Token     string `json:"token"`
			ExpiresIn int64  `json:"expires_in"`
			OpenID    string `json:"openid"`
			UserID    int64  `json:"user_id"`
			NewUser   bool   `json:"new_user"`
		}](t, got)
		return data.Token, data.UserID, data.NewUser
	}
	for name, want := range map[string]int64{"alice": 1, "bob": 2, "dave": 4} {
		if _, id, created := login(name); id != want || created {
			t.Errorf("%s logs in as user %d (new %v); want user %d, as before", name, id, created, want)
		}
	}
	alice, _, _ := login("alice")
	if got := post(t, http.MethodGet, c.url+"/user", "", "", "Authorization", "Bearer "+alice); !strings.Contains(got.raw, `"nickname":"爱丽丝"`) {
		t.Errorf("GET /user for alice = %s; want her nickname, as before", got.raw)
	}
	if got := post(t, http.MethodPost, c.url+"/claims/welcome-gift", "", "", "Authorization", "Bearer "+alice); got.code != http.StatusConflict {
		t.Errorf("alice's gift claimed again = %d %s; want 409: she took it before", got.code, got.raw)
	}
	carol, id, created := login("carol")
	if !created || id <= 4 {
		t.Errorf("carol, who deleted her account, logs in as user %d (new %v); want a new user with an id never given before", id, created)
	}
	if got := post(t, http.MethodPost, c.url+"/claims/welcome-gift", "", "", "Authorization", "Bearer "+carol); got.code != http.StatusConflict {
		t.Errorf("carol's gift claimed again = %d %s; want 409: the person took it before deleting the account", got.code, got.raw)
	}
}
