package users

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/testkit"
)

// The journal is tested as the user store uses it: opened by Open, written
// by the store's logins and claims.

func TestUserStoreFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openTestStore(t, dir, time.Now)
	compactOnNextWrite(s)
	if _, _, err := s.Login("wxapp", "o-alice", ""); err != nil {
		t.Fatal(err)
	}
	s.Close()
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode = %v (err %v); want 0700", info.Mode().Perm(), err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "users.*"))
	if len(files) < 2 {
		t.Fatalf("files %v; want a snapshot and a journal", files)
	}
	for _, f := range files {
		testkit.AssertPrivate(t, f)
	}
}

// compactOnNextWrite makes the store's next write start a snapshot, after
// waiting for any snapshot still being written.
func compactOnNextWrite(s *Store) { s.journal.CompactOnNextWrite() }

func TestUserStoreCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, time.Now)
	for i := range 50 {
		if i%10 == 0 {
			compactOnNextWrite(s)
		}
		if _, _, err := s.Login("wxapp", fmt.Sprintf("o-%d", i), ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Login("wxapp", fmt.Sprintf("o-%d", i/2), "u"); err != nil {
			t.Fatal(err)
		}
	}
	compactOnNextWrite(s)
	// A change to write: a login that only repeats one within the minute
	// writes nothing.
	if _, _, err := s.Login("wxapp", "o-0", "u-elsewhere"); err != nil {
		t.Fatal(err)
	}
	want := make([]account.User, 50)
	for i := range want {
		want[i], _ = s.Get(int64(i + 1))
	}
	s.Close()

	snapshot, err := os.ReadFile(filepath.Join(dir, "users.snapshot.jsonl"))
	if err != nil {
		t.Fatalf("no snapshot after compaction: %v", err)
	}
	if !regexp.MustCompile(`^h [0-9a-f]{8} \{"format":"wxlogin-users-snapshot"`).Match(snapshot) {
		t.Errorf("snapshot starts %q", snapshot[:40])
	}
	if lines := bytes.Count(snapshot, []byte("\n")); lines != 1+50+1 {
		t.Errorf("snapshot has %d lines; want a header, each of the 50 users once, and a trailer", lines)
	}
	journals, _ := filepath.Glob(filepath.Join(dir, "users.journal.*"))
	if len(journals) != 1 {
		t.Errorf("journals after compaction: %v; want only the newest", journals)
	}
	reopened := openTestStore(t, dir, time.Now)
	for i, w := range want {
		if got, ok := reopened.Get(int64(i + 1)); !ok || got != w {
			t.Errorf("after reopen user %d = %+v; want %+v", i+1, got, w)
		}
	}
	if n := reopened.Count(); n != 50 {
		t.Errorf("after reopen %d users; want 50", n)
	}
}

func TestUserStoreRecoversFromCrashDebris(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"torn last line", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "users.journal.000001.jsonl"), `{"id":3,"appid":"wxapp","ope`)
		}},
		{"torn header of a new journal", func(t *testing.T, dir string) {
			testkit.WriteFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), `{"format":"wxlogin-us`)
		}},
		{"empty new journal", func(t *testing.T, dir string) {
			testkit.WriteFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), "")
		}},
		{"snapshot temp file", func(t *testing.T, dir string) {
			testkit.WriteFile(t, filepath.Join(dir, ".users.snapshot.jsonl.tmp123"), `{"format":"wxlogin-users-snapshot","version":1,"gener`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir, time.Now)
			s.Login("wxapp", "o-1", "")
			s.Login("wxapp", "o-2", "")
			s.Close()
			tt.damage(t, dir)

			s = openTestStore(t, dir, time.Now)
			if n := s.Count(); n != 2 {
				t.Fatalf("after recovery %d users; want 2", n)
			}
			if u, created, err := s.Login("wxapp", "o-3", ""); err != nil || !created || u.ID != 3 {
				t.Fatalf("login after recovery = %+v, %v, %v; want user 3 created", u, created, err)
			}
			s.Close()
			if n := openTestStore(t, dir, time.Now).Count(); n != 3 {
				t.Errorf("second reopen: %d users; want 3", n)
			}
			if tmp, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(tmp) > 0 {
				t.Errorf("temp files left: %v", tmp)
			}
		})
	}
}

func TestUserStoreRejectsDamagedFiles(t *testing.T) {
	const header = `{"format":"wxlogin-users-journal","version":1,"generation":1}` + "\n"
	const u1 = `{"id":1,"appid":"wxapp","openid":"o-1","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n"
	const u2 = `{"id":2,"appid":"wxapp","openid":"o-2","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n"
	tests := []struct {
		name, file, content, wantLine string
	}{
		{"foreign file", "users.journal.000001.jsonl", "id,name\n1,alice\n", ":1:"},
		{"newer version", "users.journal.000001.jsonl", `{"format":"wxlogin-users-journal","version":2,"generation":1}` + "\n", ":1:"},
		{"garbage line", "users.journal.000001.jsonl", header + u1 + "not json\n" + u2, ":3:"},
		{"duplicate user", "users.journal.000001.jsonl", header + u1 + strings.Replace(u1, `"id":1`, `"id":2`, 1), ":3:"},
		{"id gap", "users.journal.000001.jsonl", header + u2, ":2:"},
		{"openid changed", "users.journal.000001.jsonl", header + u1 + strings.Replace(u1, "o-1", "o-x", 1), ":3:"},
		{"unknown field", "users.journal.000001.jsonl", header + strings.Replace(u1, `"id":1,`, `"id":1,"phone":"1",`, 1), ":2:"},
		{"stray brace", "users.journal.000001.jsonl", header + strings.Replace(u1, "}\n", "}}\n", 1), ":2:"},
		{"claim of an unknown user", "users.journal.000001.jsonl", header + u1 + `{"claim":{"name":"gift","user_id":2,"at":"2026-01-01T00:00:00Z"}}` + "\n", ":3:"},
		{"claim made twice", "users.journal.000001.jsonl", header + u1 + `{"claim":{"name":"gift","user_id":1,"at":"2026-01-01T00:00:00Z"}}` + "\n" +
			`{"claim":{"name":"gift","user_id":1,"at":"2026-01-02T00:00:00Z"}}` + "\n", ":4:"},
		{"claim with a bad name", "users.journal.000001.jsonl", header + u1 + `{"claim":{"name":"Gift!","user_id":1,"at":"2026-01-01T00:00:00Z"}}` + "\n", ":3:"},
		{"claim with an unknown field", "users.journal.000001.jsonl", header + u1 + `{"claim":{"name":"gift","user_id":1,"at":"2026-01-01T00:00:00Z","by":"x"}}` + "\n", ":3:"},
		{"no openid", "users.journal.000001.jsonl", header + strings.Replace(u1, `"openid":"o-1",`, "", 1), ":2:"},
		{"generation mismatch", "users.journal.000001.jsonl", strings.Replace(header, `"generation":1`, `"generation":7`, 1), ":1:"},
		{"torn snapshot", "users.snapshot.jsonl", `{"format":"wxlogin-users-snapshot","version":1,"generation":0}` + "\n" + u1[:30], ":2:"},
		{"torn line in an older journal", "users.journal.000001.jsonl", header + u1[:30], ":2:"},
		{"odd journal name", "users.journal.1.jsonl", header, ": not a wxlogin journal name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.file)
			testkit.WriteFile(t, path, tt.content)
			if tt.name == "torn line in an older journal" {
				testkit.WriteFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), strings.Replace(header, `"generation":1`, `"generation":2`, 1))
			}
			s, err := Open(dir, testMeta, time.Now, discardLogger(), nil)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded on a damaged file")
			}
			if !strings.Contains(err.Error(), path+tt.wantLine) {
				t.Errorf("Open = %v; want an error naming %s%s", err, path, tt.wantLine)
			}
			if got, _ := os.ReadFile(path); string(got) != tt.content {
				t.Error("the damaged file was changed; it must be left for the operator")
			}
		})
	}
}

func TestUserStoreWriteFailureIsSticky(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	s.journal.InjectFault(func(step string) error { // the disk goes away under the store
		if step == "write" {
			return syscall.EIO
		}
		return nil
	})
	if _, _, err := s.Login("wxapp", "o-1", ""); err == nil {
		t.Fatal("login succeeded although the journal write failed")
	}
	if _, _, err := s.Login("wxapp", "o-2", ""); err == nil {
		t.Fatal("a write after a failed fsync succeeded; it cannot be trusted to be durable")
	}
}

// appendFile appends content to the file at path.
func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}

// FuzzOpenJournal feeds arbitrary journal contents to start-up: it must
// load them or refuse with an error, never panic, and what it loads must
// load the same way again.
func FuzzOpenJournal(f *testing.F) {
	const header = `{"format":"wxlogin-users-journal","version":1,"generation":1}` + "\n"
	f.Add([]byte(header + `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n"))
	f.Add([]byte(header + `{"id":1,"appid":"a","openid":"o","created_at":"2026-01-01T00:00:00Z"`))
	f.Add([]byte(header[:20]))
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "users.journal.000001.jsonl"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, testMeta, time.Now, discardLogger(), nil)
		if err != nil {
			return
		}
		n := s.Count()
		s.Close()
		s, err = Open(dir, testMeta, time.Now, discardLogger(), nil)
		if err != nil {
			t.Fatalf("a journal that loaded once fails the second time: %v", err)
		}
		defer s.Close()
		if s.Count() != n {
			t.Fatalf("second load has %d users; first had %d", s.Count(), n)
		}
	})
}

// storeText is everything s holds, as the lines of a snapshot: two stores
// hold the same exactly when their texts are equal.
func storeText(s *Store) string {
	var b strings.Builder
	for line := range s.Lines() {
		b.Write(line)
	}
	return b.String()
}

// damageFixture writes a small store to dir with one file of each kind a
// store keeps: a snapshot, a journal sealed when writes moved on (its
// snapshot failed, so it stayed), and the newest journal, with users,
// claims and updates in each. It returns the files and what they hold.
func damageFixture(t *testing.T, dir string) (files map[string][]byte, want string) {
	t.Helper()
	clock := testkit.NewFakeClock()
	s, err := Open(dir, testMeta, clock.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	login := func(openID, unionID string) {
		t.Helper()
		_, _, err := s.Login(mockAppID, openID, unionID)
		must(err)
	}
	login("o-1", "u-1")
	_, _, err = s.Claim(1, "gift")
	must(err)
	compactOnNextWrite(s)
	login("o-2", "") // rotates to journal 2 and writes the snapshot through 1
	compactOnNextWrite(s)
	s.journal.InjectFault(func(step string) error {
		if step == "snapshot" {
			return fmt.Errorf("%s: %w", step, syscall.ENOSPC)
		}
		return nil
	})
	login("o-3", "u-3") // seals journal 2, moves to 3; the snapshot fails
	_, err = s.Update(1, func(u *account.User) { u.Nickname = "爱丽丝" })
	must(err)
	_, _, err = s.Claim(3, "gift")
	must(err)
	s.journal.WaitCompactions()
	want = storeText(s)
	must(s.Close())

	files = map[string][]byte{}
	for _, name := range []string{"users.snapshot.jsonl", "users.journal.000002.jsonl", "users.journal.000003.jsonl", "users.watermark"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		must(err)
		files[name] = data
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != len(files) {
		t.Fatalf("the fixture holds %v; want %d files", names, len(files))
	}
	return files, want
}

// openDamaged writes files to dir, in place of what it held, and opens the
// store there as a start-up would.
func openDamaged(t *testing.T, dir string, files map[string][]byte) (string, error) {
	t.Helper()
	testkit.PutFiles(t, dir, files)
	s, err := Open(dir, testMeta, time.Now, discardLogger(), nil)
	if err != nil {
		return "", err
	}
	defer s.Close()
	return storeText(s), nil
}

// TestEveryBitFlipIsRefused flips bits of each file of a small store, one
// flip per start-up: each must be refused with an error naming the file
// and line. None may start with what the store holds changed. (A flip the
// store could start with unchanged would be counted apart; there is none:
// every line, header and trailer included, has a checksum.) Then a repair,
// as wxlogin repair -drop makes it (repairDrop), must keep every
// acknowledged user and claim but, at most,
// the flipped line's, and give no id twice. It flips one bit of each byte,
// and repairs one flip in eight; with WXLOGIN_BITFLIP_ALL=1
// (scripts/bitflip, which CI runs) every bit of each byte, each repaired.
func TestEveryBitFlipIsRefused(t *testing.T) {
	everyBit := testkit.Setting(t, "WXLOGIN_BITFLIP_ALL", false, strconv.ParseBool)
	files, want := damageFixture(t, t.TempDir())
	scratch, repairs := t.TempDir(), t.TempDir()
	wantLines := map[string]bool{}
	for _, line := range strings.SplitAfter(want, "\n") {
		if line != "" {
			wantLines[line] = true
		}
	}
	// The repairs, mostly waiting for fsyncs, run four at a time.
	var repaired, repairedTwice [2]atomic.Int64 // repairs of one flipped bit, two; [1]: with every line kept
	jobs := make(chan func())
	var repairing sync.WaitGroup
	for range 4 {
		repairing.Go(func() {
			for job := range jobs {
				job()
			}
		})
	}
	located := regexp.MustCompile(`users\.([a-z]+(\.\d{6})?\.jsonl|watermark)(:\d+)?: `)
	var flips, refused, unchanged, changed int
	for _, name := range slices.Sorted(maps.Keys(files)) {
		orig := files[name]
		for i := range orig {
			// Each bit of the byte (one with go test), and then two at
			// once, more than a repair corrects: it must drop the line.
			for bit := range 9 {
				mask := byte(1) << bit
				if bit == 8 {
					mask = 3 << (i % 7)
				} else if !everyBit && bit != i%8 {
					continue
				}
				damaged := maps.Clone(files)
				damaged[name] = bytes.Clone(orig)
				damaged[name][i] ^= mask
				flips++
				got, err := openDamaged(t, scratch, damaged)
				switch {
				case err != nil && strings.Contains(err.Error(), name) && located.MatchString(err.Error()):
					refused++
					// Repaired, it keeps every line but, at most, what
					// the flipped line held (one byte in eight; every
					// byte with WXLOGIN_BITFLIP_ALL).
					if everyBit || i%8 == 0 {
						counts := &repaired
						if bit == 8 {
							counts = &repairedTwice
						}
						counts[0].Add(1)
						dir, flipped := filepath.Join(repairs, strconv.Itoa(flips)), flippedLine(orig, i)
						jobs <- func() {
							if repairFlip(t, dir, damaged, wantLines, flipped) {
								counts[1].Add(1)
							}
							os.RemoveAll(dir)
						}
					}
				case err != nil:
					t.Fatalf("flip of bits %08b of byte %d of %s: %v; want an error naming the file and line", mask, i, name, err)
				case got == want:
					unchanged++
				default:
					changed++
					t.Errorf("flip of bits %08b of byte %d of %s: accepted, and the store holds\n%s\nwhere it held\n%s", mask, i, name, got, want)
				}
			}
		}
	}
	close(jobs)
	repairing.Wait()
	bytesFlipped := 0
	for _, data := range files {
		bytesFlipped += len(data)
	}
	t.Logf("bit-flip figures: %d flips in %d bytes of 4 files (of one bit, and of two bits of each byte), %d refused with file and line, %d accepted unchanged, %d silent changes",
		flips, bytesFlipped, refused, unchanged, changed)
	t.Logf("repair figures: %d flips of one bit repaired with wxlogin repair -drop, %d of them with every line kept; %d of two bits, %d with every line kept, "+
		"the others losing the flipped line's record alone; none losing more, none giving an id twice",
		repaired[0].Load(), repaired[1].Load(), repairedTwice[0].Load(), repairedTwice[1].Load())
	if unchanged > 0 {
		t.Errorf("%d flips were accepted; every line has a checksum, so want none", unchanged)
	}
	if n, whole := repaired[0].Load(), repaired[1].Load(); whole != n {
		t.Errorf("%d of %d flips of one bit, repaired, lost a line; a repair corrects one flipped bit, so want none", n-whole, n)
	}
}

// A store of the earlier format (version 1: no checksums, no trailers)
// opens with everything in it; writes go to a new journal of the current
// format, and the next snapshot is of the current format too.
func TestAStoreOfTheEarlierFormatStillOpens(t *testing.T) {
	const header = `{"format":"wxlogin-users-snapshot","version":1,"generation":1}` + "\n"
	const u1 = `{"id":1,"appid":"wxfa4e000000000000","openid":"o-1","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n"
	const u2 = `{"id":2,"appid":"wxfa4e000000000000","openid":"o-2","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","last_login_at":"2026-01-01T00:00:00Z"}` + "\n"
	const claim = `{"claim":{"name":"gift","user_id":1,"at":"2026-01-01T00:00:00Z"}}` + "\n"
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "users.snapshot.jsonl"), header+u1+claim)
	testkit.WriteFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), `{"format":"wxlogin-users-journal","version":1,"generation":2}`+"\n"+u2)

	s := openTestStore(t, dir, time.Now)
	if n, claims := s.Count(), s.ClaimsOf(1); n != 2 || len(claims) != 1 {
		t.Fatalf("the old store opens with %d users and claims %v; want 2 and the gift", n, claims)
	}
	u, created, err := s.Login(mockAppID, "o-3", "")
	if err != nil || !created || u.ID != 3 {
		t.Fatalf("a new user = %+v, %v, %v; want user 3", u, created, err)
	}
	newest, _ := os.ReadFile(filepath.Join(dir, "users.journal.000003.jsonl"))
	if !bytes.HasPrefix(newest, []byte("h ")) || !bytes.Contains(newest, []byte(`"o-3"`)) {
		t.Errorf("the write went to %q; want a new journal of the current format", newest)
	}
	compactOnNextWrite(s)
	if _, _, err := s.Login(mockAppID, "o-4", ""); err != nil {
		t.Fatal(err)
	}
	s.journal.WaitCompactions()
	s.Close()
	snapshot, _ := os.ReadFile(filepath.Join(dir, "users.snapshot.jsonl"))
	if !bytes.HasPrefix(snapshot, []byte("h ")) {
		t.Errorf("the snapshot after compaction starts %q; want the current format", snapshot[:min(20, len(snapshot))])
	}
	if n := openTestStore(t, dir, time.Now).Count(); n != 4 {
		t.Errorf("reopened after compaction: %d users; want 4", n)
	}
}

// flippedLine is the line of file that holds byte i.
func flippedLine(file []byte, i int) []byte {
	start := bytes.LastIndexByte(file[:i], '\n') + 1
	end := i + bytes.IndexByte(file[i:], '\n') + 1
	if end <= i {
		end = len(file)
	}
	return file[start:end]
}

// repairFlip writes files, a store with one bit flipped in its line
// flipped, to dir and repairs it as wxlogin repair -drop does
// (repairDrop). What the
// repaired store holds must be want, the lines of the store before the
// flip, but for, at most, the record of the flipped line (a user's, with
// their claims, or a claim): no other line lost, no id naming another
// user, and the next new user's id past them all. It reports whether
// every line was kept.
func repairFlip(t *testing.T, dir string, files map[string][]byte, want map[string]bool, flipped []byte) bool {
	t.Helper()
	for name, data := range files {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Error(err)
			return false
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Error(err)
			return false
		}
	}
	var record Line // what the flipped line held, if a record: "r <checksum> <text>"
	if frame := len("r 01234567 "); len(flipped) > frame && flipped[0] == 'r' {
		record, _ = ParseLine(flipped[frame:])
	}
	mayLose := func(l Line) bool {
		switch {
		case record.User != nil && l.User != nil:
			return l.User.ID == record.User.ID
		case record.User != nil && l.Claim != nil:
			return l.Claim.UserID == record.User.ID
		case record.Claim != nil && l.Claim != nil:
			return *l.Claim == *record.Claim
		}
		return false
	}
	if out, err := repairDrop(dir); err != nil {
		t.Errorf("repair -drop after a flip in %q = %v:\n%s", flipped, err, out)
		return false
	}
	s, err := Open(dir, testMeta, time.Now, discardLogger(), nil)
	if err != nil {
		t.Errorf("the store repaired after a flip in %q does not open: %v", flipped, err)
		return false
	}
	defer s.Close()
	got := storeLines(s)
	whole, top := true, int64(0)
	for line := range want {
		l, _ := ParseLine([]byte(line)) // a line of the store before the flip
		if l.User != nil {
			top = max(top, l.User.ID)
			if u, ok := s.Get(l.User.ID); ok && u.Ref() != l.User.Ref() {
				t.Errorf("after a flip in %q and a repair, user %d is %s; it was %s", flipped, u.ID, u.OpenID, l.User.OpenID)
			}
		}
		if !got[line] {
			whole = false
			if !mayLose(l) {
				t.Errorf("a flip in %q, repaired, lost %s", flipped, line)
			}
		}
	}
	if u, created, err := s.Login(mockAppID, "o-after-the-repair", ""); err != nil || !created || u.ID <= top {
		t.Errorf("after a flip in %q and a repair, a new user = user %d, %v, %v; want an id past %d", flipped, u.ID, created, err, top)
	}
	return whole
}

// FuzzRepairJournal feeds arbitrary journal contents to what wxlogin
// repair reads of a store: it must keep what it can, never panic, and what
// it keeps must be a store a start-up would take, line for line.
func FuzzRepairJournal(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, testMeta, testkit.NewFakeClock().Now, discardLogger(), nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, openID := range []string{"o-1", "o-2", "o-3"} {
		if u, _, err := s.Login(mockAppID, openID, "u-"+openID); err == nil {
			s.Claim(u.ID, "gift")
		}
	}
	s.Close()
	seed, err := os.ReadFile(filepath.Join(dir, "users.journal.000001.jsonl"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	damaged := bytes.Clone(seed)
	damaged[len(damaged)/2] ^= 0x10
	f.Add(damaged)
	f.Add(seed[:len(seed)/2])
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "users.journal.000001.jsonl"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Salvage(dir, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		fresh := newMemoryStore()
		for line := range r.Kept.Lines() {
			l, err := ParseLine(line)
			if err == nil {
				err = fresh.replay(l)
			}
			if err != nil {
				t.Fatalf("a repair keeps %q, which a start-up refuses: %v", line, err)
			}
		}
	})
}
