package redisstore

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
)

// TestALinkCutShortIsFinishedAndNoClaimIsLost changes alice's unionid while
// zed, of another app, already holds the new one's person, and cuts the
// link short: zed stays apart only until alice's next login, which
// finishes it. A claim zed makes with a person read before the merge (the
// alias made, his hash not yet moved) counts in the merged person, and a
// gift alice took before stays taken for him.
func TestALinkCutShortIsFinishedAndNoClaimIsLost(t *testing.T) {
	rs := openStore(t, startRedis(t, onRedis), time.Now)
	ctx := t.Context()
	login := loginOn(t, rs)
	personOf := func(u account.User) string {
		t.Helper()
		_, person, _, err := rs.record(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		return person
	}
	alice := login("wxshop", "alice", "u-old")
	if _, _, err := rs.Claim(ctx, alice.ID, "welcome-gift"); err != nil {
		t.Fatal(err)
	}
	zed := login("wxnew", "zed", "u-new") // the new account's app, first: a person of his own
	newPerson := personOf(zed)

	// alice's unionid changes, and the link is cut short: the login script
	// ran, nothing after it.
	if _, err := loginScript.Run(ctx, rs.rc, []string{userKey(alice.ID)}, "1", "wxshop", openIDOf("wxshop", "alice"), "u-new",
		formatTime(time.Now()), rs.PersonHash("", "", "u-new"), "0"); err != nil {
		t.Fatal(err)
	}
	if personOf(zed) == personOf(alice) {
		t.Fatal("the link was not cut short: the test shows nothing")
	}
	login("wxshop", "alice", "u-new") // her next login finishes it
	if personOf(zed) != personOf(alice) {
		t.Errorf("after alice's next login, zed's person is %s, alice's %s; want one", personOf(zed), personOf(alice))
	}

	// zed's hash names his old person, as it did between the alias being
	// made and his move (a process killed there): his claims go on to
	// the merged person all the same.
	if _, err := rs.rc.Do(ctx, "HSET", userKey(zed.ID), "person", newPerson); err != nil {
		t.Fatal(err)
	}
	if _, taken, err := rs.Claim(ctx, zed.ID, "welcome-gift"); err != nil || !taken {
		t.Errorf("zed's welcome gift = taken %v, %v; want taken by alice, his person", taken, err)
	}
	if _, taken, err := rs.Claim(ctx, zed.ID, "second-gift"); err != nil || taken {
		t.Fatalf("zed's second gift = taken %v, %v; want it new", taken, err)
	}
	if _, taken, err := rs.Claim(ctx, alice.ID, "second-gift"); err != nil || !taken {
		t.Errorf("alice's second gift = taken %v, %v; want taken by zed, her person", taken, err)
	}
	claims, err := rs.ClaimsOf(ctx, alice.ID)
	if err != nil || len(claims) != 2 {
		t.Errorf("alice's claims = %v, %v; want the two gifts", claims, err)
	}
}

// A user moved from a data directory (Import) who learns a unionid in
// Redis, at a login or from verified user info, joins its unionid's
// person with the claims of the person it had: a gift it took before the
// move stays taken. So does one imported by a wxlogin whose Import wrote
// no "joined" on the user's hash: the script that moves it records the
// person it leaves (leaveLua).
func TestAnImportedUserKeepsItsClaimsWhenItLearnsAUnionID(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openStore(t, startRedis(t, kind), time.Now)
			ctx := t.Context()
			at := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
			type move struct {
				name    string
				learn   string // "login" or "update"
				earlier bool   // imported by a wxlogin whose Import wrote no "joined"
			}
			moves := []move{{"alice", "login", false}, {"bob", "update", false}, {"carol", "login", true}, {"dave", "update", true}}
			var c Contents
			for i, m := range moves {
				id := int64(i + 1)
				c.Users = append(c.Users, account.User{ID: id, AppID: "wxshop", OpenID: openIDOf("wxshop", m.name), CreatedAt: at, UpdatedAt: at, LastLoginAt: at})
				c.Claims = append(c.Claims, account.Claim{Name: "welcome-gift", AppID: "wxshop", UserID: id, ClaimedAt: at})
				c.LastID = id
			}
			if err := rs.Import(ctx, c); err != nil {
				t.Fatal(err)
			}
			for i, m := range moves {
				id := int64(i + 1)
				if m.earlier {
					mustDo(t, rs.rc, "HDEL", userKey(id), "joined")
				}
				switch m.learn {
				case "login":
					if u, _, err := rs.Login(ctx, "wxshop", openIDOf("wxshop", m.name), unionIDOf(m.name)); err != nil || u.ID != id {
						t.Fatalf("%s's login = user %d, %v; want %d", m.name, u.ID, err, id)
					}
				case "update":
					if _, err := rs.Update(ctx, id, func(u *account.User) { u.UnionID = unionIDOf(m.name) }); err != nil {
						t.Fatal(err)
					}
				}
				if _, taken, err := rs.Claim(ctx, id, "welcome-gift"); err != nil || !taken {
					t.Errorf("%+v: once its unionid is learned, the gift taken before the move is taken %v (%v); want taken", m, taken, err)
				}
				if left, err := rs.rc.Do(ctx, "HEXISTS", personHashKey(rs.PersonHash("wxshop", openIDOf("wxshop", m.name), "")), "u:"+strconv.FormatInt(id, 10)); err != nil || left != int64(0) {
					t.Errorf("%+v: the user is still a record of the person it left (%v, %v)", m, left, err)
				}
			}
		})
	}
}

// A claim made between a cut-short join and the user's next login (the
// login that learned a unionid killed right after its script) finishes
// the join first: a gift the user's person took before is taken.
func TestAClaimFinishesACutShortJoinFirst(t *testing.T) {
	rs := openStore(t, startRedis(t, onRedis), time.Now)
	ctx := t.Context()
	zed, _, err := rs.Login(ctx, "wxgame", openIDOf("wxgame", "zed"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rs.Claim(ctx, zed.ID, "welcome-gift"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := loginScript.Run(ctx, rs.rc, []string{userKey(zed.ID)}, strconv.FormatInt(zed.ID, 10), "wxgame", openIDOf("wxgame", "zed"), "u-new",
		formatTime(now), rs.PersonHash("", "", "u-new"), "0", formatTime(now.Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, taken, err := rs.Claim(ctx, zed.ID, "welcome-gift"); err != nil || !taken {
		t.Errorf("zed's gift, claimed again before his next login = taken %v, %v; want taken", taken, err)
	}
}

// A merge of persons (a unionid that changed) finishes the join of a
// member of the person merged whose own join to it was cut short: the
// claims of the person that member left come along too.
func TestAMergeFinishesAMembersCutShortJoin(t *testing.T) {
	rs := openStore(t, startRedis(t, onRedis), time.Now)
	ctx := t.Context()
	login := loginOn(t, rs)
	zed := login("wxgame", "zed", "")
	left := rs.PersonHash("wxgame", openIDOf("wxgame", "zed"), "")
	if _, _, err := rs.Claim(ctx, zed.ID, "welcome-gift"); err != nil {
		t.Fatal(err)
	}
	login("wxgame", "zed", "u-new")
	// zed's join to u-new's person cut short after it added him: his hash
	// says he joined the person he left, which still lists him, and his
	// claims are not in his person.
	joinedNew := rs.PersonHash("", "", "u-new")
	mustDo(t, rs.rc, "HSET", userKey(zed.ID), "joined", left)
	mustDo(t, rs.rc, "HSET", personHashKey(left), "u:"+strconv.FormatInt(zed.ID, 10), "wxgame")
	mustDo(t, rs.rc, "HDEL", personHashKey(joinedNew), "c:welcome-gift")

	alice := login("wxshop", "alice", "u-old")
	login("wxshop", "alice", "u-new") // u-new's person merged into alice's
	_, person, _, _ := rs.record(ctx, zed.ID)
	if _, alicePerson, _, _ := rs.record(ctx, alice.ID); person != alicePerson {
		t.Fatalf("after the merge zed is of person %s, alice of %s; want one", person, alicePerson)
	}
	if _, taken, err := rs.Claim(ctx, zed.ID, "welcome-gift"); err != nil || !taken {
		t.Errorf("zed's gift after the merge = taken %v, %v; want taken (he took it in the person he left)", taken, err)
	}
	if still, _ := rs.rc.Do(ctx, "HEXISTS", personHashKey(left), "u:"+strconv.FormatInt(zed.ID, 10)); still != int64(0) {
		t.Error("after the merge zed is still a record of the person he left")
	}
}

// An erasure of a user whose hash names a person that became an alias
// since (the user's first join cut short, then a unionid's change merged
// that person away) erases the user and says so: nothing is left to take
// the user out of.
func TestAnErasureOfAUserWhosePersonBecameAnAlias(t *testing.T) {
	rs := openStore(t, startRedis(t, onRedis), time.Now)
	ctx := t.Context()
	zed, _, err := rs.Login(ctx, "wxgame", openIDOf("wxgame", "zed"), "u-new")
	if err != nil {
		t.Fatal(err)
	}
	person := rs.PersonHash("", "", "u-new")
	mustDo(t, rs.rc, "HDEL", personHashKey(person), "u:"+strconv.FormatInt(zed.ID, 10)) // his first join cut short
	mustDo(t, rs.rc, "HDEL", userKey(zed.ID), "joined", "m")
	for _, u := range []string{"u-old", "u-new"} {
		if _, _, err := rs.Login(ctx, "wxshop", openIDOf("wxshop", "alice"), u); err != nil {
			t.Fatal(err)
		}
	}
	if alias, _ := rs.rc.Do(ctx, "HGET", personHashKey(person), "alias"); alias == nil {
		t.Fatal("u-new's person is no alias: the test shows nothing")
	}
	if _, err := rs.Erase(ctx, zed.ID); err != nil {
		t.Errorf("erase of zed = %v; want him erased, and no error", err)
	}
	if _, ok, err := rs.Get(ctx, zed.ID); ok || err != nil {
		t.Errorf("after the erasure zed's record is there: %v, %v", ok, err)
	}
}

// newUsersLoginScript runs the script of a new user's login with events,
// user id of (appID, openID, unionID), own its app's and openid's hash if
// that holds kept claims, and nothing after it: a login cut short there.
// It answers the script's reply.
func newUsersLoginScript(t *testing.T, rs *Store, id int64, appID, openID, unionID, own string) any {
	t.Helper()
	now := time.Now()
	args := []string{strconv.FormatInt(id, 10), appID, openID, unionID, formatTime(now),
		rs.PersonHash(appID, openID, unionID), "1", formatTime(now.Add(-time.Hour))}
	args = append(append(args, rs.loginEvents(id, appID, unionID, true, false)...), own)
	reply, err := loginScript.Run(t.Context(), rs.rc, []string{userKey(id), userOutboxKey(id)}, args...)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// settleFrom makes the join that follows a login's script (settlePerson),
// from the script's reply.
func settleFrom(t *testing.T, rs *Store, reply any) {
	t.Helper()
	r, _ := reply.([]any)
	u, err := readRecord(r[1])
	if err == nil {
		err = rs.settlePerson(t.Context(), u, r[1])
	}
	if err != nil {
		t.Fatal(err)
	}
}

// loginOn is a login on rs of name in appID with unionID ("" for none),
// which must succeed.
func loginOn(t *testing.T, rs *Store) func(appID, name, unionID string) account.User {
	return func(appID, name, unionID string) account.User {
		t.Helper()
		u, _, err := rs.Login(t.Context(), appID, openIDOf(appID, name), unionID)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
}

// A new user with a unionid whose login is cut short after its script
// (Redis lost, wxlogin killed), before it took the claims kept under its
// app's and openid's hash, takes them at its next login, or at its first
// claim: a gift the same user took before its erasure stays taken.
func TestANewUsersOwnClaimsCutShortAreTakenLater(t *testing.T) {
	for _, tc := range []struct {
		kind redisKind
		next string
	}{{onRedis, "login"}, {onRedis, "claim"}, {onRedisCluster, "login"}} {
		next := tc.next
		t.Run(string(tc.kind)+"/"+next, func(t *testing.T) {
			rs := openStore(t, startRedis(t, tc.kind), time.Now)
			ctx := t.Context()
			login := loginOn(t, rs)
			openID := openIDOf("wxshop", "alice")
			alice := login("wxshop", "alice", "")
			if _, _, err := rs.Claim(ctx, alice.ID, "welcome-gift"); err != nil {
				t.Fatal(err)
			}
			if _, err := rs.Erase(ctx, alice.ID); err != nil {
				t.Fatal(err)
			}
			// alice back with a unionid: her login cut short after its script.
			id, _, _, err := rs.userID(ctx, "wxshop", openID, 1, rs.PersonHash("wxshop", openID, ""))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if _, err := loginScript.Run(ctx, rs.rc, []string{userKey(id)}, strconv.FormatInt(id, 10), "wxshop", openID, "u1",
				formatTime(now), rs.PersonHash("", "", "u1"), "1", formatTime(now.Add(-time.Hour)), "", "", "", rs.PersonHash("wxshop", openID, "")); err != nil {
				t.Fatal(err)
			}
			if next == "login" {
				login("wxshop", "alice", "u1")
			}
			if c, taken, err := rs.Claim(ctx, id, "welcome-gift"); err != nil || !taken {
				t.Errorf("alice back, after a %s: welcome gift = %+v, taken %v, %v; want taken before her erasure", next, c, taken, err)
			}
		})
	}
}

// A new user with a unionid asks whether its app's and openid's hash
// holds anything (claims kept of the same user erased before) with the
// question for its id: on one server in the same script, on a Cluster in
// the same round, to another master. When nothing is there, it reads and
// marks nothing more.
func TestRedisANewUsersOwnHashIsAskedWithItsID(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openStore(t, startRedis(t, kind), time.Now)
			login := loginOn(t, rs)
			n := 0
			roundTrips := func(unionID string) int64 {
				n++
				before := rs.rc.RoundTrips()
				login("wxshop", fmt.Sprint("user", n), unionID)
				return rs.rc.RoundTrips() - before
			}
			for range 30 { // every script loaded on every master
				roundTrips("")
				roundTrips(fmt.Sprint("u", n))
			}
			without, with := roundTrips(""), roundTrips(fmt.Sprint("u", n))
			more := map[redisKind]int64{onRedis: 0, onRedisCluster: 1}[kind] // the EXISTS beside the GET
			if with != without+more {
				t.Errorf("a new user's login makes %d round trips with a unionid, %d without; want %d more with one", with, without, more)
			}
		})
	}
}

// A user back in its app without a unionid, whose app's and openid's hash
// is an alias of its person (bob's, of another app, with the unionid),
// takes the person's unionids as previous_unionids with its move there,
// never shown to clients, so that its record names the person once bob
// is erased too; also when its login is cut short after its script, the
// next finishing it, and on a Cluster. Learning the unionid again, it
// has it as its unionid only, as the file store's record would.
func TestAUserBackThroughAnAliasTakesItsPersonsUnionIDs(t *testing.T) {
	for _, tc := range []struct {
		kind redisKind
		cut  bool
	}{{onRedis, false}, {onRedis, true}, {onRedisCluster, true}} {
		t.Run(fmt.Sprintf("%s/cut short %v", tc.kind, tc.cut), func(t *testing.T) {
			rs := openStore(t, startRedis(t, tc.kind), time.Now)
			ctx := t.Context()
			login := loginOn(t, rs)
			openID := openIDOf("wxshop", "alice")
			login("wxgame", "bob", "u1")
			if _, err := rs.Erase(ctx, login("wxshop", "alice", "u1").ID); err != nil {
				t.Fatal(err)
			}
			if tc.cut {
				id, _, _, err := rs.userID(ctx, "wxshop", openID, 1, "")
				if err != nil {
					t.Fatal(err)
				}
				now := time.Now()
				if _, err := loginScript.Run(ctx, rs.rc, []string{userKey(id)}, strconv.FormatInt(id, 10), "wxshop", openID, "",
					formatTime(now), rs.PersonHash("wxshop", openID, ""), "1", formatTime(now.Add(-time.Hour)), "", "", "", ""); err != nil {
					t.Fatal(err)
				}
				if u, _, _ := rs.Get(ctx, id); u.PreviousUnionIDs != "" {
					t.Fatalf("cut short, alice's previous_unionids = %q: the test shows nothing", u.PreviousUnionIDs)
				}
			}
			back := login("wxshop", "alice", "")
			if u, _, err := rs.Get(ctx, back.ID); err != nil || u.UnionID != "" || u.PreviousUnionIDs != "u1" {
				t.Errorf("alice back: unionid %q, previous_unionids %q, %v; want none, and u1", u.UnionID, u.PreviousUnionIDs, err)
			}
			login("wxshop", "alice", "u1")
			if u, _, err := rs.Get(ctx, back.ID); err != nil || u.UnionID != "u1" || u.PreviousUnionIDs != "" {
				t.Errorf("alice back, learning u1: unionid %q, previous_unionids %q, %v; want u1, and none", u.UnionID, u.PreviousUnionIDs, err)
			}
		})
	}
}

// A user back in its app through an alias, holding its person's unionids
// as previous_unionids, that learns a unionid none of them is (its app
// moved to another Open Platform account) stays in its person, as a user
// with a unionid does and as the file store keeps it (the unionids it had
// join it to the person's records): a gift bob takes afterwards is taken
// for alice too; also when she learns it from her verified user info.
func TestAUserBackThroughAnAliasStaysInItsPersonLearningANewUnionID(t *testing.T) {
	for _, tc := range []struct {
		kind redisKind
		way  string
	}{{onRedis, "login"}, {onRedis, "update"}, {onRedisCluster, "login"}} {
		kind := tc.kind
		t.Run(string(kind)+"/"+tc.way, func(t *testing.T) {
			rs := openStore(t, startRedis(t, kind), time.Now)
			ctx := t.Context()
			login := loginOn(t, rs)
			bob := login("wxgame", "bob", "u1")
			if _, err := rs.Erase(ctx, login("wxshop", "alice", "u1").ID); err != nil {
				t.Fatal(err)
			}
			back := login("wxshop", "alice", "")
			if tc.way == "login" {
				login("wxshop", "alice", "u2")
			} else if _, err := rs.Update(ctx, back.ID, func(u *account.User) { u.SetUnionID("u2") }); err != nil {
				t.Fatal(err)
			}
			if _, _, err := rs.Claim(ctx, bob.ID, "gift"); err != nil {
				t.Fatal(err)
			}
			if c, taken, err := rs.Claim(ctx, back.ID, "gift"); err != nil || !taken {
				t.Errorf("alice back, with u2: gift = %+v, taken %v, %v; want taken by bob, her person's", c, taken, err)
			}
			if _, members, _, err := rs.Person(ctx, back.ID); err != nil || len(members) != 2 {
				t.Errorf("alice's person = %+v, %v; want alice and bob", members, err)
			}
		})
	}
}

// A user back through an erased user's alias whose login is cut short
// after its script, and whose next step is a claim, which finishes its
// join, takes its person's unionids with the join all the same, as a
// next login would have.
func TestAUserBackThroughAnAliasJoinedByAClaimTakesItsPersonsUnionIDs(t *testing.T) {
	for _, kind := range []redisKind{onRedis, onRedisCluster} {
		t.Run(string(kind), func(t *testing.T) {
			rs := openStore(t, startRedis(t, kind), time.Now)
			ctx := t.Context()
			login := loginOn(t, rs)
			openID := openIDOf("wxshop", "alice")
			login("wxgame", "bob", "u1")
			if _, err := rs.Erase(ctx, login("wxshop", "alice", "u1").ID); err != nil {
				t.Fatal(err)
			}
			id, _, _, err := rs.userID(ctx, "wxshop", openID, 1, "")
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if _, err := loginScript.Run(ctx, rs.rc, []string{userKey(id)}, strconv.FormatInt(id, 10), "wxshop", openID, "",
				formatTime(now), rs.PersonHash("wxshop", openID, ""), "1", formatTime(now.Add(-time.Hour)), "", "", "", ""); err != nil {
				t.Fatal(err)
			}
			if _, _, err := rs.Claim(ctx, id, "gift"); err != nil {
				t.Fatal(err)
			}
			if u, _, err := rs.Get(ctx, id); err != nil || u.UnionID != "" || u.PreviousUnionIDs != "u1" {
				t.Errorf("alice back, joined by her claim: unionid %q, previous_unionids %q, %v; want none, and u1", u.UnionID, u.PreviousUnionIDs, err)
			}
		})
	}
}

// A user back in its app with another unionid, whose rejoin of its erased
// user's person is cut short between the move and the join
// (rejoinPerson: wxlogin killed there), is finished by whichever comes
// next: its next login, its claim, or a relay's sweep that meets its
// outbox first. Its person is its erased user's then (bob's, and carol's
// too where carol has the new unionid, which a person.joined tells), the
// gift its erased user took counts once, and each event is told once: a
// duplicate in the log only under the same id.
func TestRedisARejoinCutShortAfterItsMoveIsFinished(t *testing.T) {
	for _, tc := range []struct {
		next  string // "login", "claim", or "sweep" (then a login)
		carol bool   // a live record with the new unionid
	}{{"login", false}, {"claim", false}, {"sweep", false}, {"login", true}, {"claim", true}, {"sweep", true}} {
		t.Run(fmt.Sprintf("%s, carol %v", tc.next, tc.carol), func(t *testing.T) {
			rs := openEventStore(t, startRedis(t, onRedis))
			ctx := t.Context()
			login := loginOn(t, rs)
			openID := openIDOf("wxshop", "alice")
			bob := login("wxgame", "bob", "u1")
			var carol account.User
			if tc.carol {
				carol = login("wxgame", "carol", "u2")
			}
			first := login("wxshop", "alice", "u1")
			if _, _, err := rs.Claim(ctx, first.ID, "gift"); err != nil {
				t.Fatal(err)
			}
			if _, err := rs.Erase(ctx, first.ID); err != nil {
				t.Fatal(err)
			}
			if err := rs.RelayLeftovers(ctx); err != nil { // the events so far in the log
				t.Fatal(err)
			}

			// alice back with u2: her login's script and join, then
			// rejoinPerson's move, and nothing after.
			id, _, own, err := rs.userID(ctx, "wxshop", openID, 1, rs.PersonHash("wxshop", openID, ""))
			if err != nil || own == "" {
				t.Fatalf("alice back: id %d, own %q, %v; want her app's and openid's hash", id, own, err)
			}
			person := rs.PersonHash("wxshop", openID, "u2")
			settleFrom(t, rs, newUsersLoginScript(t, rs, id, "wxshop", openID, "u2", own))
			into, _, err := rs.personAt(ctx, own)
			if err != nil {
				t.Fatal(err)
			}
			unions, err := rs.unionIDsAt(ctx, into, id)
			if err != nil || len(unions) == 0 {
				t.Fatalf("the unionids of bob's person: %v, %v; want u1", unions, err)
			}
			if _, err := movePersonScript.Run(ctx, rs.rc, []string{userKey(id)}, append([]string{person, into}, unions...)...); err != nil {
				t.Fatal(err)
			}
			if f, err := rs.rc.Do(ctx, "HMGET", userKey(id), "person", "joined"); err != nil || fmt.Sprint(f) != fmt.Sprint([]any{into, person}) {
				t.Fatalf("cut short, alice's hash has person and joined %v, %v: the test shows nothing; want bob's person, and her unionid's", f, err)
			}

			switch tc.next {
			case "claim":
				if c, taken, err := rs.Claim(ctx, id, "gift"); err != nil || !taken {
					t.Errorf("alice back, her claim next: %+v, taken %v, %v; want the gift taken", c, taken, err)
				}
				if tc.carol { // before alice's next login: her claim linked u2
					if c, taken, err := rs.Claim(ctx, carol.ID, "gift"); err != nil || !taken {
						t.Errorf("carol's gift after alice's claim: %+v, taken %v, %v; want taken, alice's person being hers", c, taken, err)
					}
				}
			case "sweep":
				if err := rs.RelayLeftovers(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if back := login("wxshop", "alice", "u2"); back.ID != id {
				t.Fatalf("alice's next login is user %d; want %d", back.ID, id)
			}
			if err := rs.RelayLeftovers(ctx); err != nil {
				t.Fatal(err)
			}

			want := []account.Member{{ID: bob.ID, AppID: "wxgame"}, {ID: id, AppID: "wxshop"}}
			if tc.carol {
				want = []account.Member{{ID: bob.ID, AppID: "wxgame"}, {ID: carol.ID, AppID: "wxgame"}, {ID: id, AppID: "wxshop"}}
			}
			if u, members, _, err := rs.Person(ctx, id); err != nil || !slices.Equal(members, want) || u.UnionID != "u2" || u.PreviousUnionIDs != "u1" {
				t.Errorf("alice back: unionid %q, previous %q, person %+v, %v; want u2, u1, and %+v", u.UnionID, u.PreviousUnionIDs, members, err, want)
			}
			for _, who := range []int64{id, bob.ID, carol.ID} {
				if who == 0 {
					continue
				}
				if c, taken, err := rs.Claim(ctx, who, "gift"); err != nil || !taken || c.UserID != first.ID {
					t.Errorf("user %d's gift: %+v, taken %v, %v; want the one alice took before her erasure", who, c, taken, err)
				}
			}
			if claims, err := rs.ClaimsOf(ctx, id); err != nil || len(claims) != 1 {
				t.Errorf("alice's person's claims: %+v, %v; want the gift once", claims, err)
			}

			list, err := rs.Events(ctx, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			var got []told
			seen := map[string]events.Data{}
			for _, e := range list {
				if d, ok := seen[e.ID]; ok {
					if d != e.Data {
						t.Errorf("event %s is logged twice, telling %+v and %+v", e.ID, d, e.Data)
					}
					continue // the same event again, as a relay cut short may log it
				}
				seen[e.ID] = e.Data
				if e.Data.UserID == id || e.Type == events.ClaimTaken {
					got = append(got, told{e.Type, e.Data})
				}
			}
			wantTold := []told{{events.ClaimTaken, events.Data{UserID: first.ID, AppID: "wxshop", PersonID: bob.ID, Claim: "gift"}},
				{events.UserCreated, events.Data{UserID: id, AppID: "wxshop", PersonID: bob.ID}}}
			if tc.carol {
				// Her new unionid's link brought carol's person into bob's:
				// told as the data directory tells it
				// (TestARejoinTellsTheSameEventsOnEitherStore).
				wantTold = append(wantTold, told{events.PersonJoined, events.Data{UserID: id, AppID: "wxshop", PersonID: bob.ID, PreviousPersonID: carol.ID}})
			}
			if !slices.Equal(got, wantTold) {
				t.Errorf("the log tells of alice back and of the gift\n%+v\nwant\n%+v", got, wantTold)
			}
		})
	}
}
