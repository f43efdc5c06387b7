package main

import (
	"cmp"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/config"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/redis"
	"wxlogin/internal/redisstore"
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

// A store whose person had its unionid changed (WeChat gives a moved app's
// users new unionids) moves to Redis and back whole: one person still,
// whose gift, taken twice before its records were joined and kept under
// each unionid's hash when the two who took it were erased, counts once;
// a wxlogin on the Redis still refuses the gift to the person's records.
func TestMovingAPersonWhoseUnionIDChanged(t *testing.T) {
	dir := t.TempDir()
	files, err := users.Open(dir, account.Meta{Mode: account.ModeMock, AppIDs: []string{config.MockAppID}}, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	login := func(name, unionID string) {
		t.Helper()
		if _, _, err := files.Login(config.MockAppID, fakewechat.OpenID(config.MockAppID, name), unionID); err != nil {
			t.Fatal(err)
		}
	}
	login("alice", "u-old") // 1, who takes the gift, and deletes her account
	login("bob", "u-old")   // 2, whose unionid changes
	login("dave", "u-new")  // 3, who takes the gift while a person of his own, and deletes his account
	for _, id := range []int64{1, 3} {
		if _, _, err := files.Claim(id, "welcome-gift"); err != nil {
			t.Fatal(err)
		}
	}
	login("bob", "u-new")
	login("carol", "u-new") // 4: one person with the others
	for _, id := range []int64{1, 3} {
		if _, err := files.Erase(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, persons, _ := files.Census(); persons != 1 {
		t.Fatalf("before the move: %d persons; want 1", persons)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := tool(t, "export", "-data", dir)
	if err != nil {
		t.Fatal(err)
	}

	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	url := "redis://" + srv.Addr
	if out, err := tool(t, "to-redis", "-data", dir, "-redis", url); err != nil || !strings.Contains(out, "Redis: 2 users (1 persons) and 1 claims") || !strings.Contains(out, "ok: the counts agree") {
		t.Fatalf("to-redis = %v:\n%s", err, out)
	}
	back := filepath.Join(t.TempDir(), "back")
	if out, err := tool(t, "from-redis", "-data", back, "-redis", url); err != nil || !strings.Contains(out, "ok: the counts agree") {
		t.Fatalf("from-redis = %v:\n%s", err, out)
	}
	after, err := tool(t, "export", "-data", back)
	if err != nil {
		t.Fatal(err)
	}
	// Redis keeps a person's claim of one name once, the earliest: the two
	// kept claims come back as one, under the person's hash.
	isKept := func(line string) bool { return strings.HasPrefix(line, `{"kept":`) }
	b, a := slices.DeleteFunc(sortedLines(before), isKept), slices.DeleteFunc(sortedLines(after), isKept)
	if !slices.Equal(b, a) || strings.Count(after, `{"kept":`) != 1 || !strings.Contains(after, `"name":"welcome-gift"`) {
		t.Errorf("moved to Redis and back, the store changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// carol logs in on the Redis, where the fake gives her yet another
	// unionid: still the person who took the gift.
	s := startServer(t, map[string]string{"WXLOGIN_REDIS": url})
	got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, "carol")+`"}`)
	d := dataOf[loginData](t, got)
	if got := post(t, http.MethodPost, s.url+"/claims/welcome-gift", "", "", "token", d.Token); got.code != http.StatusConflict {
		t.Errorf("carol's welcome gift on the Redis moved into = %s; want 409, taken by her person before the move", got.raw)
	}
}

// TestMovingAfterTheJoiningRecordIsErased erases the one record whose two
// unionids joined a person's two sides, on either store, and moves the
// store to the other: each sees one person still (the file store's
// erasure hands the unionids on to another record, Redis keeps an alias,
// and its export does the same as the file store), the counts agree, and
// a gift taken on one side is taken for the other after the move.
func TestMovingAfterTheJoiningRecordIsErased(t *testing.T) {
	app := config.MockAppID
	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	url := "redis://" + srv.Addr
	// fill makes alice (u-old) and carol (u-new) one person through bob,
	// whose unionid changed; alice takes the gift, and bob is erased.
	fill := func(s claimStore) (carol int64) {
		t.Helper()
		var ids []int64
		for _, l := range []struct{ name, unionID string }{{"alice", "u-old"}, {"bob", "u-old"}, {"bob", "u-new"}, {"carol", "u-new"}} {
			u, _, err := s.Login(app, fakewechat.OpenID(app, l.name), l.unionID)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, u.ID)
		}
		if _, _, err := s.Claim(ids[0], "welcome-gift"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Erase(ids[1]); err != nil {
			t.Fatal(err)
		}
		if _, taken, _ := s.Claim(ids[3], "welcome-gift"); !taken {
			t.Fatal("before the move, carol takes the gift alice took: two persons")
		}
		return ids[3]
	}

	t.Run("files to Redis", func(t *testing.T) {
		dir := t.TempDir()
		files, err := users.Open(dir, account.Meta{Mode: account.ModeMock, AppIDs: []string{app}}, time.Now, discardLogger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		fill(files)
		if err := files.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Client(t, "", "").Do(t.Context(), "FLUSHALL"); err != nil {
			t.Fatal(err)
		}
		if out, err := tool(t, "to-redis", "-data", dir, "-redis", url); err != nil || !strings.Contains(out, "(1 persons)") {
			t.Errorf("to-redis = %v:\n%s; want one person, the counts agreeing", err, out)
		}
	})
	t.Run("Redis to files", func(t *testing.T) {
		rc := srv.Client(t, "", "")
		if _, err := rc.Do(t.Context(), "FLUSHALL"); err != nil {
			t.Fatal(err)
		}
		carol := fill(redisWithin{t, openTestRedisStore(t, rc, account.ModeMock, time.Now)})
		back := filepath.Join(t.TempDir(), "back")
		if out, err := tool(t, "from-redis", "-data", back, "-redis", url); err != nil || !strings.Contains(out, "(1 persons)") {
			t.Fatalf("from-redis = %v:\n%s; want one person, the counts agreeing", err, out)
		}
		files, err := users.Open(back, account.Meta{Mode: account.ModeMock, AppIDs: []string{app}}, time.Now, discardLogger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer files.Close()
		if _, taken, _ := files.Claim(carol, "welcome-gift"); !taken {
			t.Errorf("after from-redis, carol takes the gift alice took; want it taken, one person")
		}
	})
}

// claimStore is either store as the tests of claims call it: the file
// store, or Redis within a test's context (redisWithin).
type claimStore interface {
	Login(appID, openID, unionID string) (account.User, bool, error)
	Claim(id int64, name string) (account.Claim, bool, error)
	Erase(id int64) (account.Erasure, error)
}

// logInAs logs user name of appID in on s, with unionID, and answers
// its record; t fails if it cannot.
func logInAs(t *testing.T, s claimStore, appID, name, unionID string) account.User {
	t.Helper()
	u, _, err := s.Login(appID, fakewechat.OpenID(appID, name), unionID)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// eraseOn erases user id on s; t fails if it cannot.
func eraseOn(t *testing.T, s claimStore, id int64) {
	t.Helper()
	if _, err := s.Erase(id); err != nil {
		t.Fatal(err)
	}
}

// redisStoreOn opens a store in mock mode on srv for t, emptied first if
// flush.
func redisStoreOn(t *testing.T, srv *testkit.RedisServer, flush bool) redisWithin {
	t.Helper()
	rc := srv.Client(t, "", "")
	if flush {
		if _, err := rc.Do(t.Context(), "FLUSHALL"); err != nil {
			t.Fatal(err)
		}
	}
	return redisWithin{t, openTestRedisStore(t, rc, account.ModeMock, time.Now)}
}

// keptStories tells stories of kept claims on every store they can be
// told on, each a subtest, in mock mode with the apps config.MockAppID
// and "wxgame":
//   - "files/": the file store;
//   - "redis/": Redis;
//   - "files, moved to Redis and back/": made on the files, moved with
//     to-redis, checked on Redis, moved back with from-redis and checked
//     on those files too;
//   - "Redis, moved to files/": made on Redis, moved with from-redis,
//     checked on the files.
type keptStories struct {
	srv  *testkit.RedisServer
	meta account.Meta
}

func newKeptStories(t *testing.T) keptStories {
	return keptStories{
		srv:  testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always"),
		meta: account.Meta{Mode: account.ModeMock, AppIDs: []string{config.MockAppID, "wxgame"}},
	}
}

// openFiles opens the file store in dir.
func (k keptStories) openFiles(t *testing.T, dir string) *users.Store {
	t.Helper()
	files, err := users.Open(dir, k.meta, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// tell tells the story name on each store: made on it (on the store
// moved, before the move), then checked, each move counting claims
// claims on each of its sides.
func (k keptStories) tell(t *testing.T, name string, claims int, made, checked func(t *testing.T, s claimStore)) {
	url := "redis://" + k.srv.Addr
	move := func(t *testing.T, args ...string) {
		t.Helper()
		args = append(args, "-redis", url)
		if out, err := tool(t, args...); err != nil || strings.Count(out, fmt.Sprintf("and %d claims\n", claims)) != 2 {
			t.Fatalf("%s = %v:\n%s; want %d claims on each side", args[0], err, out, claims)
		}
	}
	t.Run("files/"+name, func(t *testing.T) {
		files := k.openFiles(t, t.TempDir())
		defer files.Close()
		made(t, files)
		checked(t, files)
	})
	t.Run("redis/"+name, func(t *testing.T) {
		rs := redisStoreOn(t, k.srv, true)
		made(t, rs)
		checked(t, rs)
	})
	t.Run("files, moved to Redis and back/"+name, func(t *testing.T) {
		dir := t.TempDir()
		files := k.openFiles(t, dir)
		made(t, files)
		if err := files.Close(); err != nil {
			t.Fatal(err)
		}
		redisStoreOn(t, k.srv, true)
		move(t, "to-redis", "-data", dir)
		again := filepath.Join(t.TempDir(), "back")
		move(t, "from-redis", "-data", again)
		checked(t, redisStoreOn(t, k.srv, false))
		files = k.openFiles(t, again)
		defer files.Close()
		checked(t, files)
	})
	t.Run("Redis, moved to files/"+name, func(t *testing.T) {
		made(t, redisStoreOn(t, k.srv, true))
		dir := filepath.Join(t.TempDir(), "back")
		move(t, "from-redis", "-data", dir)
		files := k.openFiles(t, dir)
		defer files.Close()
		checked(t, files)
	})
}

// redisWithin is a store in Redis, called as the file store is: within
// t's context.
type redisWithin struct {
	t *testing.T
	s *redisstore.Store
}

func (r redisWithin) Login(appID, openID, unionID string) (account.User, bool, error) {
	return r.s.Login(r.t.Context(), appID, openID, unionID)
}

func (r redisWithin) Claim(id int64, name string) (account.Claim, bool, error) {
	return r.s.Claim(r.t.Context(), id, name)
}

func (r redisWithin) Erase(id int64) (account.Erasure, error) { return r.s.Erase(r.t.Context(), id) }

// A claim kept at an erasure counts for the person whichever way they
// come back, on either store: with the unionid the user had, in another
// app; with a unionid the user had before its app moved to another Open
// Platform account, in an app still on the old one; as the same user of
// the same app, back without the unionid it had (the app no longer on an
// account); as the same user back without one, who learns one later; and
// as the same user back without the unionid it had, where a user of
// another app of the person took the gift (also once that one is erased
// too, and once the user learns the unionid again); and as the same user
// back with another unionid (its app moved to another Open Platform
// account) where a user of another app of the person took the gift: the
// user is its person still, as a live user whose unionid changes is
// (issue 27), through the alias of its app and openid. A move carries the
// claim once, the counts agreeing on one claim, also for a person back
// before it, whom the files link to the claim by another hash of its user.
func TestAKeptClaimCountsWhicheverWayThePersonComesBack(t *testing.T) {
	const app, game = config.MockAppID, "wxgame"
	type login struct{ app, unionID string }
	cases := []struct {
		name   string
		before []login // alice's logins: the one at gift takes the gift, and she is erased after the last
		gift   int
		back   []login // her logins after: the last claims the gift
		early  int     // how many of back are made before a move, on the store moved
		erase  []int   // the records of before erased, in this order: the last's if none
	}{
		{"with its unionid, in another app", []login{{app, "u1"}}, 0, []login{{game, "u1"}}, 0, nil},
		{"with a previous unionid, in an app on the old account", []login{{app, "u1"}, {app, "u2"}}, 0, []login{{game, "u1"}}, 0, nil},
		{"with its new unionid, in another app", []login{{app, "u1"}, {app, "u2"}}, 0, []login{{game, "u2"}}, 0, nil},
		{"without its unionid, in its app", []login{{app, "u1"}}, 0, []login{{app, ""}}, 0, nil},
		{"without a unionid, learning one", []login{{app, ""}}, 0, []login{{app, ""}, {app, "u1"}}, 0, nil},
		{"without the unionid it learned before the gift, in its app", []login{{app, ""}, {app, "u1"}}, 1, []login{{app, ""}}, 0, nil},
		{"with a unionid it had none of, in its app", []login{{app, ""}}, 0, []login{{app, "u1"}}, 0, nil},
		{"with another unionid, in its app moved to another account", []login{{app, "u1"}}, 0, []login{{app, "u2"}}, 0, nil},
		{"with another unionid, in its app moved to another account, the gift taken in another", []login{{game, "u1"}, {app, "u1"}}, 0, []login{{app, "u2"}}, 0, nil},
		{"with another unionid, in its app moved to another account, the gift taken in another, before a move", []login{{game, "u1"}, {app, "u1"}}, 0, []login{{app, "u2"}}, 1, nil},
		{"without its unionid, in its app, the gift taken in another", []login{{game, "u1"}, {app, "u1"}}, 0, []login{{app, ""}}, 0, nil},
		{"without its unionid, in its app, the gift taken in another, learning it", []login{{game, "u1"}, {app, "u1"}}, 0, []login{{app, ""}, {app, "u1"}}, 1, nil},
		{"without its unionid, in its app, the gift taken in another erased too", []login{{game, "u1"}, {app, "u1"}}, 0, []login{{app, ""}}, 0, []int{1, 0}},
		{"without its unionid, in its app, the gift taken in another erased first", []login{{game, "u1"}, {app, "u1"}}, 0, []login{{app, ""}}, 0, []int{0, 1}},
		// Back before a move: the user is linked to the kept claim by
		// one of its other hashes, which the move must carry once.
		{"without its unionid, in its app, before a move", []login{{app, "u1"}}, 0, []login{{app, ""}}, 1, nil},
		{"with a unionid it had none of, in its app, before a move", []login{{app, ""}}, 0, []login{{app, "u1"}}, 1, nil},
	}
	// logIn logs alice in as ls say, the one at gift (-1 for none) taking
	// the gift, and answers her records, one for each login.
	logIn := func(t *testing.T, s claimStore, ls []login, gift int) (alice []account.User) {
		t.Helper()
		for i, l := range ls {
			u, _, err := s.Login(l.app, fakewechat.OpenID(l.app, "alice"), l.unionID)
			if err != nil {
				t.Fatal(err)
			}
			if i == gift {
				if _, _, err := s.Claim(u.ID, "welcome-gift"); err != nil {
					t.Fatal(err)
				}
			}
			alice = append(alice, u)
		}
		return alice
	}
	before := func(t *testing.T, s claimStore, ls []login, gift int, erase []int) {
		t.Helper()
		alice := logIn(t, s, ls, gift)
		if erase == nil {
			erase = []int{len(alice) - 1}
		}
		for _, i := range erase {
			if _, err := s.Erase(alice[i].ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	back := func(t *testing.T, s claimStore, ls []login) {
		t.Helper()
		alice := logIn(t, s, ls, -1)[len(ls)-1]
		if c, taken, err := s.Claim(alice.ID, "welcome-gift"); err != nil || !taken {
			t.Errorf("alice back: %+v, taken %v, %v; want the gift taken", c, taken, err)
		}
	}
	stories := newKeptStories(t)
	for _, tc := range cases {
		stories.tell(t, tc.name, 1, func(t *testing.T, s claimStore) {
			before(t, s, tc.before, tc.gift, tc.erase)
			logIn(t, s, tc.back[:tc.early], -1)
		}, func(t *testing.T, s claimStore) { back(t, s, tc.back) })
	}
}

// A user back through an erased user's alias, in its app without the
// unionid it had, is its person still when the person's last record with
// that unionid is erased after it: the gift it takes then is taken for
// a new user of the unionid in another app, on either store and after a
// move between them. The user's record carries the person's unionids
// (previous_unionids, never shown to clients), which a move needs, Redis
// keeping the person by its hash too.
func TestAGiftTakenBackThroughAnAliasCountsOnceTheUnionIDsRecordIsErased(t *testing.T) {
	const app, game = config.MockAppID, "wxgame"
	// before: bob (game) and alice (app) share u1; alice is erased, comes
	// back without a unionid and takes the gift; then bob is erased.
	before := func(t *testing.T, s claimStore) {
		t.Helper()
		bob := logInAs(t, s, game, "bob", "u1")
		eraseOn(t, s, logInAs(t, s, app, "alice", "u1").ID)
		back := logInAs(t, s, app, "alice", "")
		if c, taken, err := s.Claim(back.ID, "welcome-gift"); err != nil || taken {
			t.Fatalf("alice back: %+v, taken %v, %v; want the gift hers", c, taken, err)
		}
		eraseOn(t, s, bob.ID)
	}
	after := func(t *testing.T, s claimStore) {
		t.Helper()
		carol := logInAs(t, s, game, "carol", "u1")
		if c, taken, err := s.Claim(carol.ID, "welcome-gift"); err != nil || !taken {
			t.Errorf("a new user of u1 in %s: %+v, taken %v, %v; want the gift alice took taken", game, c, taken, err)
		}
	}
	newKeptStories(t).tell(t, "alice back takes the gift, bob erased", 1, before, after)
}

// A person who took a gift, then found a gift of the same name kept of
// an erased user of its own under another hash of one of its records
// (alice, erased in an app with no unionid, had taken it first; her
// unionid's person in another app took it since, and she is back in the
// first app with that unionid), holds one gift: moved to Redis, which
// keeps the earlier of the two in the person, and back, the counts agree
// on one claim, and she cannot take it again.
func TestAMovedPersonsGiftCountsOnceWithTheOneKeptItFinds(t *testing.T) {
	const app, game = config.MockAppID, "wxgame"
	meta := account.Meta{Mode: account.ModeMock, AppIDs: []string{app, game}}
	dir := t.TempDir()
	files, err := users.Open(dir, meta, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	login := func(s claimStore, appID, unionID string) account.User {
		t.Helper()
		u, _, err := s.Login(appID, fakewechat.OpenID(appID, "alice"), unionID)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	first := login(files, app, "")
	if _, _, err := files.Claim(first.ID, "welcome-gift"); err != nil {
		t.Fatal(err)
	}
	if _, err := files.Erase(first.ID); err != nil {
		t.Fatal(err)
	}
	if _, taken, err := files.Claim(login(files, game, "u1").ID, "welcome-gift"); err != nil || taken {
		t.Fatalf("alice in another app with a unionid takes the gift: taken %v, %v; want it hers, a person of her own", taken, err)
	}
	login(files, app, "u1")
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}

	srv := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	url := "redis://" + srv.Addr
	if out, err := tool(t, "to-redis", "-data", dir, "-redis", url); err != nil || strings.Count(out, "and 1 claims\n") != 2 {
		t.Fatalf("to-redis = %v:\n%s; want 1 claim on each side", err, out)
	}
	back := filepath.Join(t.TempDir(), "back")
	if out, err := tool(t, "from-redis", "-data", back, "-redis", url); err != nil || strings.Count(out, "and 1 claims\n") != 2 {
		t.Fatalf("from-redis = %v:\n%s; want 1 claim on each side", err, out)
	}
	if _, taken, err := redisStoreOn(t, srv, false).Claim(login(redisStoreOn(t, srv, false), app, "u1").ID, "welcome-gift"); err != nil || !taken {
		t.Errorf("alice on the Redis moved into: taken %v, %v; want the gift taken", taken, err)
	}
}

// A user of an app erased, then back with a unionid and erased again,
// finds each gift it took taken whichever way it comes back, on either
// store and on a store moved from one to the other: back in the app
// without a unionid (the app on no account now) it finds both; with
// either unionid, in another app, the one it took with it. The first
// time the user had another unionid (the app moved to another Open
// Platform account since), or none. The app's and openid's hash names
// the person of the last user erased there, which holds the claims kept
// of the earlier.
func TestAKeptClaimCountsAfterTwoErasuresOfOneOpenID(t *testing.T) {
	const app, game = config.MockAppID, "wxgame"
	// erased logs alice in with unionID, takes gift, and erases her.
	erased := func(t *testing.T, s claimStore, unionID, gift string) {
		t.Helper()
		u, _, err := s.Login(app, fakewechat.OpenID(app, "alice"), unionID)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Claim(u.ID, gift); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Erase(u.ID); err != nil {
			t.Fatal(err)
		}
	}
	type way struct {
		name, app, unionID string
		gifts              []string // those alice finds taken
	}
	back := func(t *testing.T, s claimStore, w way) {
		t.Helper()
		u, _, err := s.Login(w.app, fakewechat.OpenID(w.app, "alice"), w.unionID)
		if err != nil {
			t.Fatal(err)
		}
		for _, gift := range w.gifts {
			if c, taken, err := s.Claim(u.ID, gift); err != nil || !taken {
				t.Errorf("alice back %s: %+v, taken %v, %v; want the %s taken", w.name, c, taken, err, gift)
			}
		}
	}
	stories := newKeptStories(t)
	for _, first := range []string{"u1", ""} {
		before := func(t *testing.T, s claimStore) {
			t.Helper()
			erased(t, s, first, "first-gift")
			erased(t, s, "u2", "second-gift")
		}
		ways := []way{
			{"without a unionid, in its app", app, "", []string{"first-gift", "second-gift"}},
			{"with the second unionid, in another app", game, "u2", []string{"second-gift"}},
		}
		if first != "" {
			ways = append(ways, way{"with the first unionid, in another app", game, first, []string{"first-gift"}})
		}
		for _, w := range ways {
			name := "first with " + cmp.Or(first, "none") + ", back " + w.name
			stories.tell(t, name, 2, before, func(t *testing.T, s claimStore) { back(t, s, w) })
		}
	}
}

// A user erased while a user of another app of its person had taken a
// gift, back in its app without its unionid, joins that person again and
// takes a gift of its own; once both are erased, in either order, the
// same user back in its app without a unionid finds both gifts taken, on
// either store and on a store moved from one to the other, the counts
// agreeing on two claims: the hash of its app and openid, under which
// its own gift is kept, leads to the other's too.
func TestAKeptClaimCountsAfterTheRecordItRejoinedIsErased(t *testing.T) {
	const app, game = config.MockAppID, "wxgame"
	gifts := []string{"welcome-gift", "second-gift"}
	login := func(t *testing.T, s claimStore, appID, unionID string) account.User {
		t.Helper()
		return logInAs(t, s, appID, "alice", unionID)
	}
	claim := func(t *testing.T, s claimStore, u account.User, gift string) {
		t.Helper()
		if _, taken, err := s.Claim(u.ID, gift); err != nil || taken {
			t.Fatalf("user %d claims %s: taken %v, %v; want it claimed", u.ID, gift, taken, err)
		}
	}
	// before makes alice in the game and in the app with one unionid; the
	// game's takes the first gift, the app's is erased, back without the
	// unionid takes the second, and both are erased, the game's first if
	// gameFirst.
	before := func(t *testing.T, s claimStore, gameFirst bool) {
		t.Helper()
		inGame := login(t, s, game, "u1")
		claim(t, s, inGame, gifts[0])
		eraseOn(t, s, login(t, s, app, "u1").ID)
		back := login(t, s, app, "")
		claim(t, s, back, gifts[1])
		if gameFirst {
			eraseOn(t, s, inGame.ID)
			eraseOn(t, s, back.ID)
		} else {
			eraseOn(t, s, back.ID)
			eraseOn(t, s, inGame.ID)
		}
	}
	back := func(t *testing.T, s claimStore) {
		t.Helper()
		u := login(t, s, app, "")
		for _, gift := range gifts {
			if c, taken, err := s.Claim(u.ID, gift); err != nil || !taken {
				t.Errorf("alice back in her app without a unionid: %+v, taken %v, %v; want the %s taken", c, taken, err, gift)
			}
		}
	}
	stories := newKeptStories(t)
	for _, gameFirst := range []bool{true, false} {
		name := "the game's erased first"
		if !gameFirst {
			name = "the app's erased first"
		}
		stories.tell(t, name, 2, func(t *testing.T, s claimStore) { before(t, s, gameFirst) }, back)
	}
}

// alice, back in her app without a unionid, finds the gifts her person
// took, on each store and after a move either way, the counts agreeing:
//   - her app's openid erased twice, under two unionids, the first time
//     while another record of her first person (bob, in another app) held
//     a gift, the second time with a gift of her own as the last record
//     of her second person: her app's and openid's hash leads to bob's
//     person, which takes the second person's claims (redisstore's
//     aliasErased; Import, for the alias line and the kept claim's other
//     hash the files hold);
//   - erased beside bob, who holds a gift, back without her unionid (so
//     of bob's person again), taking a gift, and erased again, and bob
//     erased last: her app's and openid's hash, which names her second
//     gift as its own, leads to bob's too (users.Store.Erase makes it an
//     other hash of bob's kept gift; a move makes the two persons that
//     name each other one, tools.contentsOf); the same where her hash
//     names a gift of hers erased before she had a unionid.
func TestAKeptClaimCountsWhenAnErasedUsersPersonHasRecords(t *testing.T) {
	const app, game = config.MockAppID, "wxgame"
	alice, bob := fakewechat.OpenID(app, "alice"), fakewechat.OpenID(game, "bob")
	type step struct {
		app, openID, unionID, gift string
		erase                      bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"erased under two unionids, beside a record", []step{
			{game, bob, "u1", "first-gift", false},
			{app, alice, "u1", "", true},
			{app, alice, "u2", "second-gift", true},
		}},
		{"back without the unionid, erased again, the record erased last", []step{
			{game, bob, "u1", "first-gift", false},
			{app, alice, "u1", "", true},
			{app, alice, "", "second-gift", true},
			{game, bob, "u1", "", true},
		}},
		{"erased without a unionid, back with one, the other record erased first", []step{
			{app, alice, "", "second-gift", true},
			{app, alice, "u1", "", false},
			{game, bob, "u1", "first-gift", true},
			{app, alice, "u1", "", true},
		}},
	}
	before := func(t *testing.T, s claimStore, steps []step) {
		t.Helper()
		for _, st := range steps {
			u, _, err := s.Login(st.app, st.openID, st.unionID)
			if err != nil {
				t.Fatal(err)
			}
			if st.gift != "" {
				if _, _, err := s.Claim(u.ID, st.gift); err != nil {
					t.Fatal(err)
				}
			}
			if st.erase {
				if _, err := s.Erase(u.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	back := func(t *testing.T, s claimStore) {
		t.Helper()
		u, _, err := s.Login(app, alice, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, gift := range []string{"first-gift", "second-gift"} {
			if c, taken, err := s.Claim(u.ID, gift); err != nil || !taken {
				t.Errorf("alice back without a unionid: %+v, taken %v, %v; want the %s taken", c, taken, err, gift)
			}
		}
	}
	stories := newKeptStories(t)
	for _, tc := range cases {
		stories.tell(t, tc.name, 2, func(t *testing.T, s claimStore) { before(t, s, tc.steps) }, back)
	}
}

// A user back through an erased user's alias, in its app without the
// unionid it had, that then learns a unionid none of its person's records
// has (its app moved to another Open Platform account) is its person
// still, on either store and across a move: a gift bob, its person's
// record, takes after that is taken for it too.
func TestAUserBackThroughAnAliasKeepsItsPersonLearningANewUnionID(t *testing.T) {
	const app, game = config.MockAppID, "wxgame"
	made := func(t *testing.T, s claimStore) {
		t.Helper()
		bob := logInAs(t, s, game, "bob", "u1")
		eraseOn(t, s, logInAs(t, s, app, "alice", "u1").ID)
		logInAs(t, s, app, "alice", "")
		logInAs(t, s, app, "alice", "u2")
		if _, _, err := s.Claim(bob.ID, "gift"); err != nil {
			t.Fatal(err)
		}
	}
	checked := func(t *testing.T, s claimStore) {
		t.Helper()
		if c, taken, err := s.Claim(logInAs(t, s, app, "alice", "u2").ID, "gift"); err != nil || !taken {
			t.Errorf("alice back, with u2: %+v, taken %v, %v; want the gift bob took taken", c, taken, err)
		}
	}
	newKeptStories(t).tell(t, "alice back learns u2, bob takes the gift", 1, made, checked)
}

// A user erased with a gift, back in its app with another unionid (its
// app moved to another Open Platform account), or without one and
// learning it, one person with a record of that unionid, and erased again
// while that record is live, leaves the gift with that person, on either
// store and after a move either way: the record and a new user of the
// unionid find it taken, and so do a new user of the first unionid and
// the same user back in its app without one. The file store gives the
// claim kept at the first erasure the second unionid's hash at the second
// (users.Store's keepForOthersLocked); on Redis the second person holds a
// copy of it. Where a record of the first person is live too, the user
// back joined it again (issue 27): a gift either person's record took
// counts for the other's.
func TestAKeptClaimCountsAfterASecondErasureBesideALiveRecord(t *testing.T) {
	const app, game = config.MockAppID, "wxgame"
	type step struct {
		app, name, unionID, gift string
		erase                    bool
	}
	type check struct{ app, name, unionID string }
	cases := []struct {
		name   string
		steps  []step
		checks []check // each, alone, finds the gift taken
	}{
		{"back with the second unionid, its record live", []step{
			{app, "alice", "u1", "welcome-gift", true},
			{app, "alice", "u2", "", false},
			{game, "carol", "u2", "", false},
			{app, "alice", "u2", "", true},
		}, []check{{game, "carol", "u2"}, {game, "dave", "u2"}, {game, "erin", "u1"}, {app, "alice", ""}}},
		{"back without a unionid, learning the second, its record live", []step{
			{app, "alice", "u1", "welcome-gift", true},
			{app, "alice", "", "", false},
			{app, "alice", "u2", "", false},
			{game, "carol", "u2", "", false},
			{app, "alice", "u2", "", true},
		}, []check{{game, "carol", "u2"}, {game, "dave", "u2"}, {game, "erin", "u1"}, {app, "alice", ""}}},
		{"back with the second unionid, both persons' records live", []step{
			{game, "bob", "u1", "", false},
			{app, "alice", "u1", "welcome-gift", true},
			{app, "alice", "u2", "", false},
			{game, "carol", "u2", "", false},
			{app, "alice", "u2", "", true},
		}, []check{{game, "bob", "u1"}, {game, "carol", "u2"}, {game, "dave", "u2"}, {app, "alice", ""}}},
		{"the gift the first person's record took, back with the second unionid", []step{
			{game, "bob", "u1", "welcome-gift", false},
			{app, "alice", "u1", "", true},
			{app, "alice", "u2", "", false},
			{game, "carol", "u2", "", false},
			{app, "alice", "u2", "", true},
		}, []check{{game, "carol", "u2"}, {game, "dave", "u2"}, {app, "alice", ""}}},
		{"the gift the second person's record took, back with the second unionid", []step{
			{game, "bob", "u1", "", false},
			{app, "alice", "u1", "", true},
			{app, "alice", "u2", "", false},
			{game, "carol", "u2", "welcome-gift", false},
			{app, "alice", "u2", "", true},
		}, []check{{game, "bob", "u1"}, {game, "erin", "u1"}, {app, "alice", ""}}},
	}
	stories := newKeptStories(t)
	for _, tc := range cases {
		made := func(t *testing.T, s claimStore) {
			t.Helper()
			for _, st := range tc.steps {
				u := logInAs(t, s, st.app, st.name, st.unionID)
				if st.gift != "" {
					if _, _, err := s.Claim(u.ID, st.gift); err != nil {
						t.Fatal(err)
					}
				}
				if st.erase {
					eraseOn(t, s, u.ID)
				}
			}
		}
		for _, ch := range tc.checks {
			checked := func(t *testing.T, s claimStore) {
				t.Helper()
				u := logInAs(t, s, ch.app, ch.name, ch.unionID)
				if c, taken, err := s.Claim(u.ID, "welcome-gift"); err != nil || !taken {
					t.Errorf("%s in %s with %q: %+v, taken %v, %v; want the gift taken", ch.name, ch.app, ch.unionID, c, taken, err)
				}
			}
			stories.tell(t, fmt.Sprintf("%s, %s in %s with %q", tc.name, ch.name, ch.app, ch.unionID), 1, made, checked)
		}
	}
}

// A user back through an erased user's alias, in its app without the
// unionid it had, whose login on Redis is cut short after its script
// (wxlogin killed), makes its first move into its person with its first
// claim, which finishes the join: it is its person all the same, on
// either store and after a move either way, as if a login had moved it.
// The gift it takes is taken for its person's record (bob) and, once bob
// is erased too, for a new user of the unionid; the counts agree on one
// claim. The file store writes a login in one line: there is nothing to
// cut short, and its story is the plain one.
func TestAUserBackThroughAnAliasJoinedByItsClaimKeepsItsPerson(t *testing.T) {
	const app, game = config.MockAppID, "wxgame"
	stories := newKeptStories(t)
	for _, bobErased := range []bool{false, true} {
		made := func(t *testing.T, s claimStore) {
			t.Helper()
			bob := logInAs(t, s, game, "bob", "u1")
			eraseOn(t, s, logInAs(t, s, app, "alice", "u1").ID)
			var back int64
			if r, ok := s.(redisWithin); ok {
				back = loginCutShortOnRedis(t, stories.srv.Client(t, "", ""), r.s, app, fakewechat.OpenID(app, "alice"))
			} else {
				back = logInAs(t, s, app, "alice", "").ID
			}
			if c, taken, err := s.Claim(back, "welcome-gift"); err != nil || taken {
				t.Fatalf("alice back, her login cut short: %+v, taken %v, %v; want the gift hers", c, taken, err)
			}
			if bobErased {
				eraseOn(t, s, bob.ID)
			}
		}
		checked := func(t *testing.T, s claimStore) {
			t.Helper()
			who := []account.User{logInAs(t, s, app, "alice", "")}
			if bobErased {
				who = append(who, logInAs(t, s, game, "carol", "u1"))
			} else {
				who = append(who, logInAs(t, s, game, "bob", "u1"))
			}
			for _, u := range who {
				if c, taken, err := s.Claim(u.ID, "welcome-gift"); err != nil || !taken {
					t.Errorf("user %d in %s: %+v, taken %v, %v; want the gift alice took taken", u.ID, u.AppID, c, taken, err)
				}
			}
		}
		name := "alice back joined by her claim, bob live"
		if bobErased {
			name = "alice back joined by her claim, bob erased"
		}
		stories.tell(t, name, 1, made, checked)
	}
}

// loginCutShortOnRedis makes on rs, through rc, what the login script of
// a new user of appID and openID without a unionid leaves when wxlogin is
// killed right after it: an id for the openid, and the record, of the
// app's and openid's person, joined to nothing. It answers the user's id.
func loginCutShortOnRedis(t *testing.T, rc *redis.Client, rs *redisstore.Store, appID, openID string) int64 {
	t.Helper()
	ctx := t.Context()
	v, err := rc.Do(ctx, "INCR", redisIDsKey)
	if err != nil {
		t.Fatal(err)
	}
	id := v.(int64)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, cmd := range [][]string{
		{"SET", redisOpenIDKey(appID, openID), strconv.FormatInt(id, 10)},
		{"HSET", redisUserKey(id), "id", strconv.FormatInt(id, 10), "appid", appID, "openid", openID,
			"person", rs.PersonHash(appID, openID, ""), "created_at", now, "updated_at", now, "last_login_at", now, "v", "1"},
	} {
		if _, err := rc.Do(ctx, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	return id
}
