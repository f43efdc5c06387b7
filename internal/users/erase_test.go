package users

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/testkit"
)

// An erasure whose compaction never finished (here its snapshot fails, and
// the store is closed before any other write) is finished at the next
// start: the erased user's data does not wait in the files for a
// compaction of size.
func TestAnUnfinishedErasureIsFinishedAtTheNextStart(t *testing.T) {
	clock := testkit.NewFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)
	alice, _, _ := s.Login("wxshop", "o-alice-shop", "u-alice")
	if _, err := s.Update(alice.ID, func(u *account.User) { u.PhoneNumber = "13912345678" }); err != nil {
		t.Fatal(err)
	}
	s.journal.InjectFault(func(step string) error {
		if step == "snapshot" {
			return fmt.Errorf("%s: %w", step, syscall.ENOSPC)
		}
		return nil
	})
	if _, err := s.Erase(alice.ID); err != nil {
		t.Fatal(err)
	}
	s.journal.WaitCompactions()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if found := testkit.FilesHolding(t, dir, "o-alice-shop", "13912345678"); len(found) == 0 {
		t.Fatal("the failed snapshot took the data off the disk anyway: the test tests nothing")
	}

	s = openTestStore(t, dir, clock.Now)
	s.journal.WaitCompactions()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if found := testkit.FilesHolding(t, dir, "o-alice-shop", "u-alice", "13912345678"); len(found) > 0 {
		t.Errorf("after the next start the data directory still holds %v", found)
	}
}

// An erased user is gone from memory at once, and from the disk once the
// compaction the erasure starts is done: no byte of their openid, unionid,
// nickname or phone is left in the data directory. Their claims are kept by
// name: a returning person, with or without a unionid, is a new user who
// cannot take the same benefit again; anyone else can.
func TestErasureForgetsTheUserButNotTheirClaims(t *testing.T) {
	clock := testkit.NewFakeClock()
	dir := t.TempDir()
	s := openTestStore(t, dir, clock.Now)
	alice, _, _ := s.Login("wxshop", "o-alice-shop", "u-alice")
	solo, _, _ := s.Login("wxsolo", "o-alice-solo", "") // an app with no Open Platform account
	carol, _, _ := s.Login("wxshop", "o-carol", "u-carol")
	for _, id := range []int64{alice.ID, solo.ID} {
		if _, err := s.Update(id, func(u *account.User) { u.Nickname, u.PhoneNumber = "爱丽丝", "13912345678" }); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Claim(id, "welcome-gift"); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute)
	for _, id := range []int64{alice.ID, solo.ID} {
		gone, err := s.Erase(id)
		if err != nil || gone.UserID != id || !slices.Equal(gone.ClaimsKept, []string{"welcome-gift"}) {
			t.Fatalf("erase(%d) = %+v, %v; want the user, with welcome-gift kept", id, gone, err)
		}
	}
	if _, ok := s.Get(alice.ID); ok || s.Count() != 1 {
		t.Errorf("after erasure get(%d) found the user, or %d users are left; want only carol", alice.ID, s.Count())
	}
	if _, err := s.Erase(alice.ID); err == nil {
		t.Error("a second erasure of the same user succeeded")
	}
	s.journal.WaitCompactions()
	s.Close()
	if found := testkit.FilesHolding(t, dir, "o-alice-shop", "o-alice-solo", "u-alice", "爱丽丝", "13912345678"); len(found) > 0 {
		t.Errorf("after the erasure's compaction the data directory still holds %v", found)
	}

	// Started again: the person comes back as a new user, whose gift is
	// taken already; carol's is not.
	s = openTestStore(t, dir, clock.Now)
	for _, app := range []struct{ appID, openID, unionID string }{{"wxshop", "o-alice-shop", "u-alice"}, {"wxsolo", "o-alice-solo", ""}} {
		back, created, err := s.Login(app.appID, app.openID, app.unionID)
		if err != nil || !created || back.ID <= carol.ID {
			t.Fatalf("%s logs in again: %+v, created %v, %v; want a new user", app.appID, back, created, err)
		}
		c, taken, err := s.Claim(back.ID, "welcome-gift")
		if err != nil || !taken || c.AppID != app.appID {
			t.Errorf("%s: the returning person's gift = %+v, taken %v, %v; want the claim made before the erasure", app.appID, c, taken, err)
		}
		if got := s.ClaimsOf(back.ID); len(got) != 1 || got[0].Name != "welcome-gift" {
			t.Errorf("%s: claims of the returning person = %+v; want the kept gift", app.appID, got)
		}
	}
	if _, taken, _ := s.Claim(carol.ID, "welcome-gift"); taken {
		t.Error("carol's gift is taken: the kept claims are not per person")
	}
	// Another person's app with the same openid is not alice.
	other, _, err := s.Login("wxother", "o-alice-solo", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, taken, _ := s.Claim(other.ID, "welcome-gift"); taken {
		t.Error("a user of another app with the same openid met alice's kept claim")
	}
}

// FuzzParseErasureLine checks the reader of the erasure lines: it never
// panics, and a line it accepts says the same written again.
func FuzzParseErasureLine(f *testing.F) {
	f.Add([]byte(`{"person_key":"` + strings.Repeat("ab", 32) + `"}` + "\n"))
	f.Add([]byte(`{"kept":{"person":"` + strings.Repeat("cd", 32) + `","name":"welcome-gift","appid":"wxapp","user_id":5,"at":"2026-11-24T10:00:00Z"}}` + "\n"))
	f.Add([]byte(`{"alias":{"hash":"` + strings.Repeat("ef", 32) + `","user_id":7}}` + "\n"))
	f.Add([]byte(`{"erased":{"user_id":5,"at":"2026-11-24T10:00:00.123Z"}}` + "\n"))
	f.Add([]byte(`{"erased":{"user_id":0}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		l, ok, err := parseErasureLine(line)
		if !ok || err != nil {
			return
		}
		var again []byte
		switch {
		case l.PersonKey != nil:
			again = appendJSONLine(nil, map[string]string{"person_key": hex.EncodeToString(l.PersonKey)})
		case l.Kept != nil:
			again = appendJSONLine(nil, map[string]*KeptClaim{"kept": l.Kept})
		case l.Alias != nil:
			again = appendJSONLine(nil, map[string]*Alias{"alias": l.Alias})
		default:
			again = erasedLine(nil, l.Erased.UserID, l.Erased.At)
		}
		back, ok, err := parseErasureLine(again)
		if !ok || err != nil || !bytes.Equal(back.PersonKey, l.PersonKey) || (l.Kept != nil && !reflect.DeepEqual(back.Kept, l.Kept)) || (l.Alias != nil && *back.Alias != *l.Alias) || (l.Erased != nil && *back.Erased != *l.Erased) {
			t.Fatalf("%q reads as %+v; written again, %q reads as %+v, %v", line, l, again, back, err)
		}
	})
}

// A user's change and its erasure in one batch, the batch that starts the
// compaction the erasure asks for: the snapshot holds the erasure, and the
// new journal the batch again, to be replayed after it. The store opens
// again, the user erased, the others as they were. The change is a
// record's line or a claim's.
func TestAChangeAndItsErasureInTheBatchOfACompaction(t *testing.T) {
	for _, change := range []string{"update", "claim"} {
		t.Run(change, func(t *testing.T) {
			clock := testkit.NewFakeClock()
			dir := t.TempDir()
			s := openTestStore(t, dir, clock.Now)
			a, _, err := s.Login(mockAppID, "o-a", "u-a")
			if err != nil {
				t.Fatal(err)
			}
			// A flush held in its write, so that the change and the erasure
			// wait for the next one together.
			blocked, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			s.journal.InjectFault(func(step string) error {
				if step == "write" {
					once.Do(func() { close(blocked); <-release })
				}
				return nil
			})
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			wg.Go(func() { _, _, err := s.Login(mockAppID, "o-x", ""); errs <- err })
			<-blocked
			wg.Go(func() {
				var err error
				if change == "update" {
					_, err = s.Update(a.ID, func(u *account.User) { u.Nickname = "A" })
				} else {
					_, _, err = s.Claim(a.ID, "welcome-gift")
				}
				errs <- err
			})
			testkit.WaitFor(t, "the change made in memory", func() bool {
				u, _ := s.Get(a.ID)
				return u.Nickname == "A" || len(s.ClaimsOf(a.ID)) == 1
			})
			wg.Go(func() { _, err := s.Erase(a.ID); errs <- err })
			testkit.WaitFor(t, "the erasure made in memory", func() bool { return !s.Exists(a.ID) })
			close(release)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			s.journal.WaitCompactions()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			again, err := Open(dir, testMeta, clock.Now, discardLogger(), nil)
			if err != nil {
				t.Fatalf("the store does not open again after acknowledged writes: %v", err)
			}
			defer again.Close()
			if again.Exists(a.ID) || again.Count() != 1 {
				t.Errorf("opened again, user %d exists: %v, and %d users; want it erased, and the other kept", a.ID, again.Exists(a.ID), again.Count())
			}
		})
	}
}

// A line about an erased user that no erasure follows in the journal is
// damage, not a batch replayed twice: the store refuses to open.
func TestALineAfterAnErasureWithNoErasureAfterItIsRefused(t *testing.T) {
	s := &Store{now: time.Now}
	s.makeIndexes(4)
	s.erasedAgain = map[int64]bool{}
	at := time.Now().UTC()
	u := &account.User{ID: 1, AppID: mockAppID, OpenID: "o-a", CreatedAt: at, UpdatedAt: at, LastLoginAt: at}
	for _, l := range []Line{{User: u}, {Erased: &Erased{UserID: 1, At: at}}, {User: u}} {
		if err := s.replay(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.erasedAgainError(); err == nil {
		t.Error("a user line after its erasure, with no erasure after it, passed")
	}
	if err := s.replay(Line{Erased: &Erased{UserID: 1, At: at}}); err != nil {
		t.Fatal(err)
	}
	if err := s.erasedAgainError(); err != nil {
		t.Errorf("with its erasure after it: %v; want it taken as a batch replayed twice", err)
	}
}

// A user erased with no claim of its own, while another record of its
// person (its unionid, in another app) holds the gift, is its person
// again when it comes back in its app without the unionid: the alias
// line kept of its app's and openid's hash, which a reopen reads from the
// snapshot the erasure made as from the journal, leads it to the person,
// and names neither its openid nor the unionid. When the other record is
// erased too, its kept claim is found under the hash instead.
func TestAnErasedUsersAliasLeadsBackToItsPerson(t *testing.T) {
	for _, snapshot := range []bool{true, false} {
		t.Run(fmt.Sprintf("snapshot %v", snapshot), func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir, time.Now)
			bob, _, _ := s.Login("wxgame", "o-bob-game", "u-alice")
			alice, _, _ := s.Login("wxshop", "o-alice-shop", "u-alice")
			if _, _, err := s.Claim(bob.ID, "welcome-gift"); err != nil {
				t.Fatal(err)
			}
			if !snapshot {
				s.journal.InjectFault(func(step string) error {
					if step == "snapshot" {
						return fmt.Errorf("%s: %w", step, syscall.ENOSPC)
					}
					return nil
				})
			}
			if _, err := s.Erase(alice.ID); err != nil {
				t.Fatal(err)
			}
			s.journal.WaitCompactions()
			var text []byte
			for line := range s.Lines() {
				text = append(text, line...)
			}
			if !bytes.Contains(text, []byte(`{"alias":{"hash":"`)) || bytes.Contains(text, []byte("o-alice-shop")) {
				t.Errorf("the lines of the store:\n%s\nwant an alias line, and no openid of alice's", text)
			}
			if err := s.Close(); err != nil && snapshot {
				t.Fatal(err)
			}
			s = openTestStore(t, dir, time.Now)
			back, created, err := s.Login("wxshop", "o-alice-shop", "")
			if err != nil || !created {
				t.Fatalf("alice back = %+v, created %v, %v; want a new user", back, created, err)
			}
			if _, taken, _ := s.Claim(back.ID, "welcome-gift"); !taken {
				t.Error("alice back without her unionid takes the gift bob took: two persons")
			}
			if person, _ := s.Person(back.ID); len(person) != 2 || person[0].ID != bob.ID {
				t.Errorf("alice back is of person %+v; want bob's", person)
			}
			if _, err := s.Erase(bob.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Erase(back.ID); err != nil {
				t.Fatal(err)
			}
			again, _, _ := s.Login("wxshop", "o-alice-shop", "")
			if _, taken, _ := s.Claim(again.ID, "welcome-gift"); !taken {
				t.Error("alice back again, bob erased: the gift is not taken")
			}
			if _, _, claims := s.Census(); claims != 0 {
				t.Errorf("Census claims = %d; want 0: the gift is kept, not claimed again", claims)
			}
		})
	}
}

// A user back in its app without its unionid through the alias of its
// erased user, which takes a gift of its own, and the record of its
// person the alias led to, which took the welcome gift, both erased in
// either order: the same user back again finds both gifts taken, also
// after a reopen, which reads the kept claims from the lines. Erased
// last, the record's claims are found under the alias's hash too,
// though its own gift is kept under that hash already.
func TestAUserBackThroughAnAliasFindsBothGiftsOnceBothAreErased(t *testing.T) {
	for _, backFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("the one back erased first %v", backFirst), func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir, time.Now)
			bob, _, _ := s.Login("wxgame", "o-bob-game", "u-alice")
			alice, _, _ := s.Login("wxshop", "o-alice-shop", "u-alice")
			if _, _, err := s.Claim(bob.ID, "welcome-gift"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Erase(alice.ID); err != nil {
				t.Fatal(err)
			}
			back, _, _ := s.Login("wxshop", "o-alice-shop", "")
			if _, taken, err := s.Claim(back.ID, "second-gift"); err != nil || taken {
				t.Fatalf("alice back claims the second gift: taken %v, %v; want it claimed", taken, err)
			}
			order := []int64{bob.ID, back.ID}
			if backFirst {
				order = []int64{back.ID, bob.ID}
			}
			for _, id := range order {
				if _, err := s.Erase(id); err != nil {
					t.Fatal(err)
				}
			}
			for _, reopened := range []bool{false, true} {
				if reopened {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = openTestStore(t, dir, time.Now)
				}
				again, _, _ := s.Login("wxshop", "o-alice-shop", "")
				for _, gift := range []string{"welcome-gift", "second-gift"} {
					if _, taken, _ := s.Claim(again.ID, gift); !taken {
						t.Errorf("alice back again (reopened %v): the %s is not taken", reopened, gift)
					}
				}
				if _, err := s.Erase(again.ID); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// A user erased last of its person, with no claim of its own, finds the
// claims of its person's records erased before it when it comes back in
// its app without its unionid: its app's and openid's hash leads to them,
// whichever of the person's records went first, as on Redis (aliasErased).
func TestAUserErasedLastFindsItsPersonsKeptClaimsBackWithoutItsUnionID(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	bob, _, _ := s.Login("wxgame", "o-bob-game", "u-alice")
	alice, _, _ := s.Login("wxshop", "o-alice-shop", "u-alice")
	if _, _, err := s.Claim(bob.ID, "welcome-gift"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{bob.ID, alice.ID} {
		if _, err := s.Erase(id); err != nil {
			t.Fatal(err)
		}
	}
	back, _, err := s.Login("wxshop", "o-alice-shop", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, taken, _ := s.Claim(back.ID, "welcome-gift"); !taken {
		t.Error("alice back without her unionid, erased after bob, takes the gift bob took: two persons")
	}
}

// A repair keeps the alias of an erased user's app and openid that names
// a record of its person whose first line is damaged, when a later line of
// that user brings the record back, as it keeps the user's claims: the
// erased user back without its unionid still finds the gift its person
// took.
func TestARepairKeepsAnAliasWhoseUserALaterLineBringsBack(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, time.Now)
	s.journal.InjectFault(func(step string) error {
		if step == "snapshot" {
			return fmt.Errorf("%s: %w", step, syscall.ENOSPC) // every line stays in the journals
		}
		return nil
	})
	bob, _, _ := s.Login("wxgame", "o-bob-game", "u-alice")
	alice, _, _ := s.Login("wxshop", "o-alice-shop", "u-alice")
	if _, _, err := s.Claim(bob.ID, "welcome-gift"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Erase(alice.ID); err != nil {
		t.Fatal(err)
	}
	s.journal.WaitCompactions()
	if _, err := s.Update(bob.ID, func(u *account.User) { u.Nickname = "bob" }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	damaged := false
	names, _ := filepath.Glob(filepath.Join(dir, "users.journal.*"))
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(data, []byte(`"openid":"o-bob-game"`)); i >= 0 && !damaged {
			copy(data[i+len(`"openid":"`):], "XXXX") // beyond a one-bit correction
			if err := os.WriteFile(name, data, 0o600); err != nil {
				t.Fatal(err)
			}
			damaged = true
		}
	}
	if !damaged {
		t.Fatal("no journal holds bob's first record")
	}
	out, err := repairDrop(dir)
	if err != nil {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	if strings.Contains(out, `{"alias":`) {
		t.Errorf("the repair says:\n%s\nwant the alias kept, bob back by his later line", out)
	}
	s = openTestStore(t, dir, time.Now)
	defer s.Close()
	back, _, err := s.Login("wxshop", "o-alice-shop", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, taken, _ := s.Claim(back.ID, "welcome-gift"); !taken {
		t.Error("alice back without her unionid after a repair takes the gift bob took: two persons")
	}
}
