package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/config"
	"wxlogin/internal/fakewechat"
	"wxlogin/internal/journal"
	"wxlogin/internal/testkit"
	"wxlogin/internal/users"
)

// TestKill9KeepsEveryAcknowledgedWrite is the crash test. It kills a real
// wxlogin process with SIGKILL at random moments while new users log in and
// claim a welcome gift, and restarts it, over and over. After each kill it
// checks the files themselves: they parse, every user whose login was
// answered is there with the id it was given, so is every claim answered
// 201, and no user or claim is stored twice. The store starts just short of
// its first compaction, so that kills also land while a snapshot is being
// written and after one has replaced the journals.
//
// It kills 3 times in `go test`. scripts/crash sets WXLOGIN_CRASH_KILLS for
// more, and WXLOGIN_BINARY to kill the built wxlogin rather than this test
// binary; the figures line it logs is what the script prints.
func TestKill9KeepsEveryAcknowledgedWrite(t *testing.T) {
	kills := testkit.Setting(t, "WXLOGIN_CRASH_KILLS", 3, strconv.Atoi)
	// Each kill comes at a uniformly random moment in [0, 2×meanUptime) after
	// the restarted server answers /healthz.
	const workers, meanUptime = 8, 400 * time.Millisecond
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	dir := t.TempDir()
	seedNearCompaction(t, dir)

	users := newNewUsers()
	var lost, duplicates int
	for kill := 1; kill <= kills; kill++ {
		c := startChild(t, dir)
		stop := users.keepComing(c.url, workers, fmt.Sprintf("k%d", kill))
		select {
		case <-time.After(time.Duration(rng.Int64N(int64(2 * meanUptime)))):
		case err := <-c.exited:
			t.Fatalf("wxlogin exited before kill %d: %v\n%s", kill, err, c.logs.String())
		}
		c.cmd.Process.Kill() // SIGKILL, with logins in flight
		<-c.exited
		c.exited <- nil // for the cleanup
		stop()

		l, d := checkStoreAfterCrash(t, dir, users.acked, users.claimed)
		if l+d > 0 {
			t.Errorf("after kill %d: %d acknowledged writes lost, %d stored twice", kill, l, d)
		}
		lost, duplicates = lost+l, duplicates+d
	}
	acked, claimed := users.acked, users.claimed
	gifts := 0
	for _, c := range claimed {
		if c {
			gifts++
		}
	}
	t.Logf("crash figures: %d kills survived, %d logins and %d claims acknowledged, %d lost, %d duplicates (seed %d)",
		kills, len(acked), gifts, lost, duplicates, seed)
	if len(acked) < kills {
		t.Errorf("only %d logins acknowledged in %d rounds: the kills did not land under load", len(acked), kills)
	}
	// A compaction starts a new journal generation at once and renames the
	// snapshot in when it is written; under load, kills may keep cutting it
	// short, which is a case worth having too.
	journals, _ := filepath.Glob(filepath.Join(dir, "users.journal.*.jsonl"))
	if newest := slices.Max(journals); strings.HasSuffix(newest, ".000001.jsonl") {
		t.Errorf("no compaction ever started, so no kill met one: the journals are %v", journals)
	}

	// The restarted server agrees: everyone acknowledged is a returning user
	// with their id, and an acknowledged gift cannot be claimed again.
	c := startChild(t, dir)
	for name, id := range acked {
		got := post(t, "POST", c.url+"/login", jsonCT, `{"code":"`+mockCode(t, c.url, name)+`"}`)
		d := dataOf[loginData](t, got)
		if d.NewUser || d.UserID != id {
			t.Fatalf("after restart, login of %s = %s; want user %d, new_user false", name, got.raw, id)
		}
		if claimed[id] {
			if again := post(t, "POST", c.url+"/claims/welcome-gift", "", "", "token", d.Token); again.code != http.StatusConflict {
				t.Fatalf("after restart, user %d's acknowledged gift was given again: HTTP %d %s", id, again.code, again.raw)
			}
		}
	}
}

// TestKill9KeepsEveryAnsweredDeletion is the crash test of account
// deletion on the data directory: as TestKill9KeepsEveryAcknowledgedWrite,
// and the users of every other worker delete their account (DELETE /user)
// once their login and gift were answered. After each kill the files
// check out (wxlogin check too), and every deletion answered 200 is in
// them: the erasure, and the gift kept; after the restart its token is
// dead, its person logs in as a new user with an id never given before,
// and finds the gift claimed. A deletion cut short by the kill is made
// wholly (as the files say) or not at all: the user logs in with its id.
// WXLOGIN_CRASH_KILLS sets the kills (3).
func TestKill9KeepsEveryAnsweredDeletion(t *testing.T) {
	kills := testkit.Setting(t, "WXLOGIN_CRASH_KILLS", 3, strconv.Atoi)
	const workers, meanUptime = 8, 400 * time.Millisecond
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	dir := t.TempDir()
	seedNearCompaction(t, dir)

	d := newDeletions()
	var erasedInFiles map[int64]bool
	lost, duplicates := 0, 0
	for kill := 1; kill <= kills+1; kill++ {
		c := startChild(t, dir)
		d.checkDeletionsOverHTTP(t, c.url, func(id int64) bool { return erasedInFiles[id] }, false)
		if kill > kills {
			break
		}
		stop := d.keepComing(c.url, workers, fmt.Sprintf("k%d", kill))
		select {
		case <-time.After(time.Duration(rng.Int64N(int64(2 * meanUptime)))):
		case err := <-c.exited:
			t.Fatalf("wxlogin exited before kill %d: %v\n%s", kill, err, c.logs.String())
		}
		c.cmd.Process.Kill() // SIGKILL, with logins, claims and deletions in flight
		<-c.exited
		c.exited <- nil // for the cleanup
		stop()

		acked, claimed := d.acked()
		l, dup, erased, kept := readStoreAfterCrash(t, dir, acked, claimed)
		d.mu.Lock()
		for name, u := range d.erased {
			if !erased[u.id] || !slices.Contains(kept[u.id], "welcome-gift") {
				t.Errorf("after kill %d: user %s's deletion was answered 200; the files hold it erased: %v, its gift kept: %v", kill, name, erased[u.id], kept[u.id])
				l++
			}
		}
		for id := range d.gone {
			if !erased[id] {
				t.Errorf("after kill %d: user %d, erased, is not erased in the files", kill, id)
				l++
			}
		}
		d.mu.Unlock()
		if l+dup > 0 {
			t.Errorf("after kill %d: %d acknowledged writes lost, %d stored twice", kill, l, dup)
		}
		lost, duplicates, erasedInFiles = lost+l, duplicates+dup, erased
		if out, err := tool(t, "check", "-data", dir); err != nil {
			t.Fatalf("after kill %d: wxlogin check: %v\n%s", kill, err, out)
		}
	}
	acked, _ := d.acked()
	t.Logf("crash figures of deletions: %d kills survived, %d users live, %d deletions asked, %d made, %d lost, %d duplicates (seed %d)",
		kills, len(acked), d.asked, len(d.gone), lost, duplicates, seed)
	if len(d.gone) < kills {
		t.Errorf("only %d deletions made in %d rounds: the kills did not land under deletions", len(d.gone), kills)
	}
}

// seedNearCompaction fills a new store in dir, through its own write path,
// to just short of the journal size at which it writes its first snapshot.
func seedNearCompaction(t *testing.T, dir string) {
	t.Helper()
	s, err := users.Open(dir, testMeta, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	sample := &account.User{ID: 1, AppID: "wxbench", OpenID: benchOpenID(0), UnionID: fakewechat.UnionID("0"), CreatedAt: now, UpdatedAt: now, LastLoginAt: now}
	seedUsers(t, s, (journal.MinCompactBytes-16<<10)/len(users.Line{User: sample}.Append(nil)))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkStoreAfterCrash opens the store in dir as a restart would (which
// cuts a torn last line) and then reads its files line by line with
// hash/crc32 and encoding/json, independently of the store's own reader. It
// counts the acknowledged users and claims that are missing or changed, and
// the users and claims stored twice; it fails the test if a line does not
// check out. Erased users are in the files as their erasure and their
// claims kept (kept, the names by user id): an erased user's record is no
// duplicate of a later user of the same app and openid.
func checkStoreAfterCrash(t *testing.T, dir string, acked map[string]int64, claimed map[int64]bool) (lost, duplicates int) {
	lost, duplicates, _, _ = readStoreAfterCrash(t, dir, acked, claimed)
	return lost, duplicates
}

// readStoreAfterCrash is checkStoreAfterCrash, which also answers the ids
// the files hold erased, and the names of the claims kept of each.
func readStoreAfterCrash(t *testing.T, dir string, acked map[string]int64, claimed map[int64]bool) (lost, duplicates int, erased map[int64]bool, kept map[int64][]string) {
	t.Helper()
	s, err := users.Open(dir, testMeta, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatalf("the store does not load: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	idsOf := map[account.Ref][]int64{}
	refOf := map[int64]account.Ref{}
	erased, kept = map[int64]bool{}, map[int64][]string{}
	claimAt := map[string]time.Time{} // "user id/name" → when
	files, _ := filepath.Glob(filepath.Join(dir, "users.*.jsonl"))
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		prev := make([]byte, 4) // the checksum of the line before, big-endian; none before the header
		for i, framed := range lines {
			// "<kind> <crc32c> <text>": the CRC-32C of the checksum before it,
			// the kind and the text.
			kind, rest, _ := strings.Cut(framed, " ")
			sum, line, _ := strings.Cut(rest, " ")
			crc := crc32.Checksum(append(append(bytes.Clone(prev), kind...), line...), crc32.MakeTable(crc32.Castagnoli))
			if want := fmt.Sprintf("%08x", crc); sum != want {
				t.Fatalf("%s:%d: checksum %q; the line's is %s", path, i+1, sum, want)
			}
			binary.BigEndian.PutUint32(prev, crc)
			if i == 0 || kind == "t" && i == len(lines)-1 {
				continue // the header, and the trailer
			}
			var rec struct {
				ID     int64  `json:"id"`
				AppID  string `json:"appid"`
				OpenID string `json:"openid"`
				Claim  *users.Claim
				Erased *users.Erased
				Kept   *users.KeptClaim
			}
			if err := json.Unmarshal([]byte(line), &rec); kind != "r" || err != nil {
				t.Fatalf("%s:%d does not parse as a record (kind %s): %v", path, i+1, kind, err)
			}
			switch {
			case rec.Erased != nil:
				erased[rec.Erased.UserID] = true
				continue
			case rec.Kept != nil:
				if !slices.Contains(kept[rec.Kept.UserID], rec.Kept.Name) {
					kept[rec.Kept.UserID] = append(kept[rec.Kept.UserID], rec.Kept.Name)
				}
				continue
			case rec.ID == 0 && rec.Claim == nil:
				continue // the person key, an alias
			}
			if c := rec.Claim; c != nil {
				key := fmt.Sprint(c.UserID, "/", c.Name)
				if at, ok := claimAt[key]; ok && !at.Equal(c.At) {
					duplicates++ // a second claim, not the same one in a snapshot and a journal
				}
				claimAt[key] = c.At
				continue
			}
			ref := account.Ref{AppID: rec.AppID, OpenID: rec.OpenID}
			if !slices.Contains(idsOf[ref], rec.ID) {
				idsOf[ref] = append(idsOf[ref], rec.ID)
			}
			if other, ok := refOf[rec.ID]; ok && other != ref {
				duplicates++
			}
			refOf[rec.ID] = ref
		}
	}
	idOf := map[account.Ref]int64{} // each app and openid's user not erased
	for ref, ids := range idsOf {
		ids = slices.DeleteFunc(ids, func(id int64) bool { return erased[id] })
		if len(ids) > 0 {
			idOf[ref] = ids[0]
		}
		duplicates += max(len(ids)-1, 0)
	}
	for name, id := range acked {
		if idOf[account.Ref{AppID: config.MockAppID, OpenID: fakewechat.OpenID(config.MockAppID, name)}] != id {
			lost++
		}
		if _, ok := claimAt[fmt.Sprint(id, "/welcome-gift")]; claimed[id] && !ok {
			lost++
		}
	}
	return lost, duplicates, erased, kept
}

// newUsers is what a server acknowledged of new users logging in, each
// claiming the welcome gift, while it was killed, failed over or backed up.
type newUsers struct {
	mu      sync.Mutex
	acked   map[string]int64 // user name → user_id the server answered
	claimed map[int64]bool   // user ids whose claim was answered 201
}

func newNewUsers() *newUsers {
	return &newUsers{acked: map[string]int64{}, claimed: map[int64]bool{}}
}

// keepComing logs new users, named prefix-w<worker>-<i>, in at base with
// workers at once until stop, recording what was acknowledged.
func (u *newUsers) keepComing(base string, workers int, prefix string) (stop func()) {
	return testkit.KeepBusy(workers, func(w, i int) {
		name := fmt.Sprintf("%s-w%d-%d", prefix, w, i)
		if id, gift, ok := tryNewUserWithGift(base, name); ok {
			u.mu.Lock()
			u.acked[name], u.claimed[id] = id, gift
			u.mu.Unlock()
		}
	})
}

// count is how many new users were acknowledged so far.
func (u *newUsers) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.acked)
}

// tryNewUserWithGift logs a new user in and claims a welcome gift. It
// returns the user id and whether the claim was answered 201, or false if
// the login failed (as it does while the server is killed).
func tryNewUserWithGift(base, name string) (id int64, gift, ok bool) {
	id, token, ok := tryNewUserLogin(base, name)
	if !ok {
		return 0, false, false
	}
	req, _ := http.NewRequest("POST", base+"/claims/welcome-gift", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return id, false, true
	}
	resp.Body.Close()
	return id, resp.StatusCode == http.StatusCreated, true
}

// tryNewUserLogin logs a new user in and returns the user id and token, or
// false if any step failed or the user was not new.
func tryNewUserLogin(base, name string) (int64, string, bool) {
	id, token, isNew, ok := tryLogin(base, name)
	return id, token, ok && isNew
}

// tryLogin logs a user in and returns the user id and token, and whether
// the user is new, or false if any step failed.
func tryLogin(base, name string) (id int64, token string, isNew, ok bool) {
	resp, err := client.Post(base+"/mock/wx.login", jsonCT, strings.NewReader(`{"user":"`+name+`"}`))
	if err != nil {
		return 0, "", false, false
	}
	var code struct{ Code string }
	err = jsonDecode(resp.Body, &code)
	resp.Body.Close()
	if err != nil {
		return 0, "", false, false
	}
	resp, err = client.PostForm(base+"/login", url.Values{"code": {code.Code}})
	if err != nil {
		return 0, "", false, false
	}
	defer resp.Body.Close()
	var got struct {
		Status int
		Data   struct {
			Token   string `json:"token"`
			UserID  int64  `json:"user_id"`
			NewUser bool   `json:"new_user"`
		}
	}
	if err := jsonDecode(resp.Body, &got); err != nil || got.Status != 0 {
		return 0, "", false, false
	}
	return got.Data.UserID, got.Data.Token, got.Data.NewUser, true
}

// deletions is what a server acknowledged of new users who log in, claim
// the welcome gift and, on every other worker, delete their account once
// both were answered, while it was killed: for the crash tests of account
// deletion.
type deletions struct {
	mu       sync.Mutex
	live     map[string]member // user name → its current user, not deleted
	erased   map[string]member // deletions answered 200, not yet checked by a login again
	inFlight map[string]member // deletions sent and not answered 200
	given    map[int64]string  // every id answered to a new user, to whom
	gone     map[int64]bool    // the ids of every user whose deletion was made
	problems []string          // what the workers saw go wrong: an id given twice
	asked    int               // deletions sent
}

// member is one user of the deletion crash tests: its id, a token of it,
// and whether its gift was answered 201.
type member struct {
	id      int64
	token   string
	claimed bool
}

func newDeletions() *deletions {
	return &deletions{live: map[string]member{}, erased: map[string]member{}, inFlight: map[string]member{},
		given: map[int64]string{}, gone: map[int64]bool{}}
}

// keepComing logs new users, named prefix-w<worker>-<i>, in at base with
// workers at once until stop; each claims the gift, and those of even
// workers whose claim was answered 201 delete their account.
func (d *deletions) keepComing(base string, workers int, prefix string) (stop func()) {
	return testkit.KeepBusy(workers, func(w, i int) {
		name := fmt.Sprintf("%s-w%d-%d", prefix, w, i)
		id, token, ok := tryNewUserLogin(base, name)
		if !ok {
			return
		}
		d.mu.Lock()
		d.newUser(name, id)
		d.live[name] = member{id: id, token: token}
		d.mu.Unlock()
		claimed := tryCall(base, "POST", "/claims/welcome-gift", token) == http.StatusCreated
		d.mu.Lock()
		d.live[name] = member{id: id, token: token, claimed: claimed}
		d.mu.Unlock()
		if w%2 == 1 || !claimed {
			return
		}
		d.mu.Lock()
		d.asked++
		d.mu.Unlock()
		code := tryCall(base, "DELETE", "/user", token)
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.live, name)
		if code == http.StatusOK {
			d.erased[name] = member{id: id, token: token, claimed: true}
			d.gone[id] = true
		} else {
			d.inFlight[name] = member{id: id, token: token, claimed: true}
		}
	})
}

// newUser records that id was answered to name's login as a new user, and
// a problem if it was given before. d.mu is held.
func (d *deletions) newUser(name string, id int64) {
	if was, ok := d.given[id]; ok {
		d.problems = append(d.problems, fmt.Sprintf("id %d given to %s, and to %s before (erased: %v)", id, name, was, d.gone[id]))
	}
	d.given[id] = name
}

// tryCall sends method path to base with token and returns the HTTP status,
// or 0 when there is no answer (the server killed).
func tryCall(base, method, path, token string) int {
	req, _ := http.NewRequest(method, base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkDeletionsOverHTTP checks, on a server restarted after a kill, each
// deletion not yet checked: one answered 200 was made (made, as the store
// holds it); one not answered was made wholly or not at all: its user's
// token is dead, its person logs in as a new user with a new id and finds
// the gift claimed, or (not made) the user logs in with its id and, where
// tokens outlive a kill (tokensSurvive: on Redis), its token still works.
// Each person logged in again is live again, under the id it got.
func (d *deletions) checkDeletionsOverHTTP(t *testing.T, base string, made func(id int64) bool, tokensSurvive bool) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, answered := range []bool{true, false} {
		list := map[bool]map[string]member{true: d.erased, false: d.inFlight}[answered]
		for name, u := range list {
			delete(list, name)
			inStore := made(u.id)
			tokenWorks := tryCall(base, "GET", "/user", u.token) == http.StatusOK
			id, token, isNew, ok := tryLogin(base, name)
			if !ok {
				t.Fatalf("user %s (was %d) cannot log in after the restart", name, u.id)
			}
			switch {
			case answered && (!inStore || !isNew || tokenWorks):
				t.Errorf("user %d's deletion was answered 200, yet after the restart the store holds it erased: %v, its person logs in as a new user: %v (id %d), its token works: %v",
					u.id, inStore, isNew, id, tokenWorks)
			case inStore != isNew || inStore && tokenWorks || !inStore && tokensSurvive && !tokenWorks:
				t.Errorf("user %d's deletion was cut short and is half made: the store holds it erased: %v, its person logs in as a new user: %v (id %d), its token works: %v",
					u.id, inStore, isNew, id, tokenWorks)
			}
			if !isNew {
				if id != u.id {
					t.Errorf("user %s, not deleted, logs in as %d; want %d", name, id, u.id)
				}
				d.live[name] = member{id: id, token: token, claimed: u.claimed}
				continue
			}
			d.gone[u.id] = true
			d.newUser(name, id)
			if got := tryCall(base, "POST", "/claims/welcome-gift", token); got != http.StatusConflict {
				t.Errorf("user %s, deleted as %d and back as %d, claims the gift again: HTTP %d; want 409, the deleted user's claim kept", name, u.id, id, got)
			}
			d.live[name] = member{id: id, token: token}
		}
	}
	for _, p := range d.problems {
		t.Error(p)
	}
	d.problems = nil
}

// acked is the live users' ids by name, and which of them claimed the gift,
// as newUsers has them.
func (d *deletions) acked() (map[string]int64, map[int64]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	acked, claimed := map[string]int64{}, map[int64]bool{}
	for name, u := range d.live {
		acked[name], claimed[u.id] = u.id, u.claimed
	}
	return acked, claimed
}
