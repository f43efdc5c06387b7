package users

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"iter"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/journal"
	"wxlogin/internal/testkit"
)

// A repair cut short after it created the new store's first journal (and
// its watermark), but before its snapshot, leaves a directory a start-up
// refuses as before (it was damaged), never one it would take for an
// empty store.
func TestARepairCutShortLeavesTheOldStore(t *testing.T) {
	files, _ := damageFixture(t, t.TempDir())
	for name, damaged := range testkit.DamagedStores(files) {
		for _, step := range []string{"mark", "snapshot"} {
			dir := testkit.PutFiles(t, t.TempDir(), damaged)
			replaceKilledAt(t, dir, json.RawMessage(`{"mode":"mock","appids":[]}`), step, func(func([]byte) bool) {})
			if s, err := Open(dir, testMeta, time.Now, discardLogger(), nil); err == nil {
				t.Errorf("%s, then a repair cut short at step %s: the store opened with %d users; want it refused", name, step, s.Count())
				s.Close()
			}
		}
	}
}

// replaceKilledAt replaces the store in dir with lines as a repair does
// (journal.ReplaceWith), killed at step, which must fail it.
func replaceKilledAt(t *testing.T, dir string, meta json.RawMessage, step string, lines iter.Seq[[]byte]) {
	t.Helper()
	j, err := journal.Open(dir, "users", journal.Options{Meta: meta, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	killed := errors.New("killed")
	j.InjectFault(func(s string) error {
		if s == step {
			return killed
		}
		return nil
	})
	if err := j.ReplaceWith(lines); !errors.Is(err, killed) {
		t.Fatalf("a repair killed at step %s = %v", step, err)
	}
}

// repairFixture writes a store of n users to a new directory, each with a
// claim, the first half in its snapshot and the rest in its newest
// journal; it returns the directory's files.
func repairFixture(t *testing.T, n int) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	clock := testkit.NewFakeClock()
	s, err := Open(dir, testMeta, clock.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if i == n/2 {
			compactOnNextWrite(s)
		}
		u, _, err := s.Login(mockAppID, fmt.Sprintf("o-%d", i), "")
		if err == nil {
			_, _, err = s.Claim(u.ID, "gift")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	s.journal.WaitCompactions()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "users.") {
			files[e.Name()], err = os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return files
}

// storeLines is what a store holds, as the set of its snapshot's lines.
func storeLines(s *Store) map[string]bool {
	lines := map[string]bool{}
	for line := range s.Lines() {
		lines[string(line)] = true
	}
	return lines
}

// repairedAs repairs the store in dir as wxlogin repair -drop does
// (repairDrop) and checks
// what it keeps against want, the lines of the store before the damage:
// every line of want is kept but those of user lostID (0: none), whose
// record and claims may be lost, and no id of want names another user.
// The next new user gets an id past want's every id, and past atLeast. It
// returns the repair's output.
func repairedAs(t *testing.T, dir string, want map[string]bool, lostID, atLeast int64) string {
	t.Helper()
	out, err := repairDrop(dir)
	if err != nil {
		t.Fatalf("repair -drop = %v:\n%s", err, out)
	}
	s := openTestStore(t, dir, time.Now)
	got := storeLines(s)
	top := int64(0)
	for line := range want {
		l, err := ParseLine([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		id := int64(0)
		switch {
		case l.User != nil:
			id = l.User.ID
			if u, ok := s.Get(id); ok && u.Ref() != l.User.Ref() {
				t.Errorf("user %d is %s %s after the repair; it was %s %s", id, u.AppID, u.OpenID, l.User.AppID, l.User.OpenID)
			}
		case l.Claim != nil:
			id = l.Claim.UserID
		}
		top = max(top, id)
		if !got[line] && (id == 0 || id != lostID) {
			t.Errorf("the repair lost %s", line)
		}
	}
	u, created, err := s.Login(mockAppID, "o-after-the-repair", "")
	if err != nil || !created || u.ID <= max(top, atLeast) {
		t.Errorf("a new user after the repair = user %d, %v, %v; want a new id past %d", u.ID, created, err, max(top, atLeast))
	}
	return out
}

// A repair keeps every line but what the damage took, and never gives an
// id twice: a line dropped in the middle leaves its id unused, later users
// keep theirs, and lines cut from the end of the newest journal, which the
// watermark counts, leave their ids unused too. A bit flipped is corrected.
func TestARepairLosesOnlyWhatTheDamageTook(t *testing.T) {
	const n = 600
	files := repairFixture(t, n)
	other := repairFixture(t, 4) // another store
	whole := openTestStore(t, testkit.PutFiles(t, t.TempDir(), files), time.Now)
	want := storeLines(whole)
	whole.Close()
	const journal = "users.journal.000002.jsonl"
	user := func(id int) int { // where user id's line is in the journal
		at := bytes.Index(files[journal], []byte(fmt.Sprintf(`{"id":%d,`, id)))
		if at < 0 {
			t.Fatalf("user %d is not in %s", id, journal)
		}
		return at
	}
	header := func(file []byte) []byte {
		first, _, _ := bytes.Cut(file, []byte("\n"))
		return append(bytes.Clone(first), '\n')
	}
	openid := user(501) + len(`{"id":501,"appid":"wxfa4e000000000000","openid":"o-5`)
	tests := []struct {
		name   string
		damage func(f map[string][]byte)
		lostID int64 // the user the damage may take, with their claim
		// atLeast is the id the next new user must be past, besides every
		// id the store held: the ids of users cut from the end stay unused.
		atLeast int64
		say     []string // what the repair must say
	}{
		{"one bit flipped in user 501's openid", func(f map[string][]byte) { f[journal][openid] ^= 0x01 }, 0, 0,
			[]string{"corrects", "bit 0 of byte"}},
		{"two bits flipped in user 501's openid", func(f map[string][]byte) { f[journal][openid] ^= 0x03 }, 501, 0,
			[]string{"checksum mismatch", `drops the claim "gift" of user 501`, "keeps ids 501, 601 unused"}},
		{"user 501's line taken out", func(f map[string][]byte) {
			at := user(501)
			end := at + bytes.IndexByte(f[journal][at:], '\n') + 1
			f[journal] = slices.Concat(f[journal][:at-len("r 01234567 ")], f[journal][end:])
		}, 501, 0, []string{"a line is missing", `{"claim":{"name":"gift","user_id":501`, "keeps id 501 unused"}},
		{"a line's checksum damaged", func(f map[string][]byte) {
			at := user(501) - len("01234567 ")
			f[journal][at], f[journal][at+1] = f[journal][at+1]^0x01, f[journal][at]^0x02
		}, 0, 0, []string{"its frame was damaged, and the next line vouches for its text"}},
		{"the newest journal cut to its header", func(f map[string][]byte) { f[journal] = header(f[journal]) }, 0, n,
			[]string{fmt.Sprintf("%s: cut short: the watermark (users.watermark) records", journal), "lines are missing"}},
		{"the newest journal cut, and the watermark deleted", func(f map[string][]byte) {
			f[journal] = header(f[journal])
			delete(f, "users.watermark")
		}, 0, n, []string{"users.watermark: missing, so lines cut from the end of the newest journal cannot be counted"}},
		{"the newest journal cut, and the watermark of another store", func(f map[string][]byte) {
			f[journal] = header(f[journal])
			f["users.watermark"] = other["users.watermark"] // of journal 2 too
		}, 0, n, []string{"users.watermark: of another store, so lines cut from the end of"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			damaged := maps.Clone(files)
			damaged[journal] = bytes.Clone(files[journal])
			tt.damage(damaged)
			dir := testkit.PutFiles(t, t.TempDir(), damaged)
			keep := want
			if tt.atLeast > 0 { // the users cut from the end are lost
				keep = map[string]bool{}
				for line := range want {
					if bytes.Contains(files["users.snapshot.jsonl"], []byte(line)) {
						keep[line] = true
					}
				}
			}
			out := repairedAs(t, dir, keep, tt.lostID, tt.atLeast)
			for _, say := range tt.say {
				if !strings.Contains(out, say) {
					t.Errorf("the repair said\n%s\nwant it to say %q", out, say)
				}
			}
			if tt.lostID == 0 && tt.atLeast == 0 && strings.Contains(out, "\n  drops ") {
				t.Errorf("the repair said\n%s\nwant nothing dropped", out)
			}
		})
	}
}

// updateFixture, set by go test -update-fixture, writes damageFixture anew
// to fixtureDir.
var updateFixture = flag.Bool("update-fixture", false, "write damageFixture anew to "+fixtureDir)

// fixtureDir holds damageFixture, checked in, for the tools' tests (the
// root's datatools_test.go), which damage a copy of its files: the store's
// files, and what they hold, as wxlogin export writes it, in export.jsonl.
const fixtureDir = "testdata/store"

// The store the tools' tests damage is damageFixture's: the same files,
// holding what damageFixture holds, which its export.jsonl says.
func TestTheToolsFixtureIsTheDamageFixture(t *testing.T) {
	files, want := damageFixture(t, t.TempDir())
	if *updateFixture {
		for name, data := range files {
			testkit.WriteFile(t, filepath.Join(fixtureDir, name), string(data))
		}
		testkit.WriteFile(t, filepath.Join(fixtureDir, "export.jsonl"), want)
	}
	checkedIn := map[string][]byte{}
	entries, err := os.ReadDir(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if checkedIn[e.Name()], err = os.ReadFile(filepath.Join(fixtureDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	export := checkedIn["export.jsonl"]
	delete(checkedIn, "export.jsonl")
	if got, names := slices.Sorted(maps.Keys(checkedIn)), slices.Sorted(maps.Keys(files)); !slices.Equal(got, names) {
		t.Fatalf("%s holds %v; damageFixture writes %v (go test -update-fixture writes them anew)", fixtureDir, got, names)
	}
	if string(export) != want {
		t.Errorf("%s/export.jsonl is\n%s\ndamageFixture holds\n%s", fixtureDir, export, want)
	}
	s, _, err := Inspect(testkit.PutFiles(t, t.TempDir(), checkedIn))
	if err != nil {
		t.Fatalf("the checked-in fixture does not check out: %v", err)
	}
	defer s.Close()
	if got := storeText(s); got != want {
		t.Errorf("the checked-in fixture holds\n%s\ndamageFixture holds\n%s", got, want)
	}
}

// A repair killed at any step of writing the repaired store, then run
// again, still keeps unused the ids of the users the watermark says were
// cut from the end: the first run must not have replaced the watermark, the
// only count of them, before the repaired snapshot holds those ids.
func TestARepairKilledHalfwayThenRunAgainGivesNoIDTwice(t *testing.T) {
	const n = 600
	files := repairFixture(t, n)
	const journalName = "users.journal.000002.jsonl"
	damaged := maps.Clone(files)
	first, _, _ := bytes.Cut(files[journalName], []byte("\n"))
	damaged[journalName] = append(bytes.Clone(first), '\n') // every user of the journal cut
	keep := map[string]bool{}
	whole := openTestStore(t, testkit.PutFiles(t, t.TempDir(), files), time.Now)
	for line := range storeLines(whole) {
		if bytes.Contains(files["users.snapshot.jsonl"], []byte(line)) {
			keep[line] = true
		}
	}
	whole.Close()
	for _, step := range []string{"create", "header", "rename", "sync dir", "mark", "snapshot"} {
		t.Run(step, func(t *testing.T) {
			dir := testkit.PutFiles(t, t.TempDir(), damaged)
			r, err := Salvage(dir, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			replaceKilledAt(t, dir, r.Kept.storedMeta, step, r.Kept.Lines())
			repairedAs(t, dir, keep, 0, n)
		})
	}
}

// A journal that a later one follows ends with a trailer, which counts its
// lines; one cut at a line boundary has lost it, and with it the count of
// the lines cut; one deleted takes its lines uncounted. Users lost so whose
// ids no later line names (the journals after hold no new user) may have
// been told their ids: a repair keeps unused as many as it keeps when the
// watermark is lost.
func TestARepairOfAJournalCutBeforeTheNewestGivesNoIDTwice(t *testing.T) {
	const n = 10
	dir := t.TempDir()
	s, err := Open(dir, testMeta, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, _, err := s.Login(mockAppID, fmt.Sprintf("o-%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	s.journal.InjectFault(func(step string) error {
		if step == "snapshot" {
			return fmt.Errorf("%s: %w", step, syscall.ENOSPC)
		}
		return nil
	})
	compactOnNextWrite(s)
	if _, err := s.Update(1, func(u *account.User) { u.Nickname = "爱丽丝" }); err != nil { // seals journal 1, moves to 2; the snapshot fails
		t.Fatal(err)
	}
	s.journal.WaitCompactions()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, name := range []string{"users.journal.000001.jsonl", "users.journal.000002.jsonl", "users.watermark"} {
		if files[name], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	const first = "users.journal.000001.jsonl"
	tests := []struct {
		name   string
		damage func(f map[string][]byte)
	}{
		{"journal 1 cut at a line boundary", func(f map[string][]byte) {
			at := bytes.Index(f[first], []byte(`{"id":6,`))
			f[first] = f[first][:bytes.LastIndexByte(f[first][:at], '\n')+1] // users 6 to n, and the trailer
		}},
		{"journal 1 deleted", func(f map[string][]byte) { delete(f, first) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			damaged := maps.Clone(files)
			tt.damage(damaged)
			repairedAs(t, testkit.PutFiles(t, t.TempDir(), damaged), map[string]bool{}, 0, n)
		})
	}
}

// A rotation cut short (a new journal holding only its header, the one
// before it not yet sealed) is the debris of a crash, which a start-up
// clears; a repair of damage elsewhere in the store takes it so too, not
// as a journal cut at its trailer, which would keep 1 000 ids unused and
// say lines were lost.
func TestARepairTakesARotationCutShortAsAStartUpDoes(t *testing.T) {
	const n = 600
	files := repairFixture(t, n)
	const journal2 = "users.journal.000002.jsonl"
	dir := testkit.PutFiles(t, t.TempDir(), files)
	s := openTestStore(t, dir, time.Now)
	want := storeLines(s)
	crashed := errors.New("crashed")
	s.journal.InjectFault(func(step string) error {
		if step == "seal" {
			return crashed
		}
		return nil
	})
	compactOnNextWrite(s)
	if _, _, err := s.Login(mockAppID, "o-never-acknowledged", ""); !errors.Is(err, crashed) {
		t.Fatalf("a login whose rotation is cut at the seal = %v; want it to fail", err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "users.journal.000003.jsonl")); err != nil {
		t.Fatal(err)
	}
	damaged := slices.Clone(files[journal2]) // as before the seal was written, a bit flipped
	at := bytes.Index(damaged, []byte(`{"id":501,`)) + len(`{"id":501,"appid":"wxfa4e000000000000","openid":"o-5`)
	damaged[at] ^= 0x01
	testkit.WriteFile(t, filepath.Join(dir, journal2), string(damaged))

	out := repairedAs(t, dir, want, 0, 0)
	for _, wrong := range []string{"cut short", "unused"} {
		if strings.Contains(out, wrong) {
			t.Errorf("a repair of a bit flipped beside a rotation cut short says %q:\n%s", wrong, out)
		}
	}
}
