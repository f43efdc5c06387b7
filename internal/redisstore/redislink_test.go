package redisstore

import (
	"testing"
	"time"
	"wxlogin/internal/account"
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
	login := func(appID, name, unionID string) account.User {
		t.Helper()
		u, _, err := rs.Login(ctx, appID, openIDOf(appID, name), unionID)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
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
