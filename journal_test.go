package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
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
	"wxlogin/internal/strictjson"
)

// The journal is tested as the user store uses it: opened by
// openUserStore, written by the store's logins and claims.

func TestUserStoreFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openTestStore(t, dir, time.Now)
	compactOnNextWrite(s)
	if _, _, err := s.login("wxapp", "o-alice", ""); err != nil {
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
		assertPrivate(t, f)
	}
}

// compactOnNextWrite makes the store's next write start a snapshot, after
// waiting for any snapshot still being written.
func compactOnNextWrite(s *userStore) { compactJournalOnNextWrite(s.journal) }

// compactJournalOnNextWrite makes j's next flush start a snapshot, after
// waiting for any snapshot still being written.
func compactJournalOnNextWrite(j *journal) {
	j.compactions.Wait()
	j.flushMu.Lock()
	defer j.flushMu.Unlock()
	j.compactAt = 0
}

// noteOwner is an owner of a journal other than the user store: a map of
// notes, one line per note set, the last line of a note winning. It shows
// that the journal knows lines, not users.
type noteOwner struct {
	mu    sync.Mutex // guards notes and the order of appends
	notes map[string]string
	hold  chan struct{} // if set, a snapshot waits for it before its first line
}

type noteLine struct{ Key, Value string }

func (o *noteOwner) snapshot() iter.Seq[[]byte] {
	o.mu.Lock()
	lines := make([][]byte, 0, len(o.notes))
	for k, v := range o.notes {
		line, _ := json.Marshal(noteLine{k, v})
		lines = append(lines, append(line, '\n'))
	}
	hold := o.hold
	o.mu.Unlock()
	return func(yield func([]byte) bool) {
		if hold != nil {
			<-hold
		}
		for _, line := range lines {
			if !yield(line) {
				return
			}
		}
	}
}

func (o *noteOwner) open(t *testing.T, dir string) *journal {
	t.Helper()
	j, err := openJournal(dir, "notes", journalOptions{snapshot: o.snapshot, log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	o.notes = map[string]string{}
	parse := func(line []byte) (noteLine, error) {
		var n noteLine
		return n, strictjson.Decode(line, &n)
	}
	apply := func(n noteLine) error { o.notes[n.Key] = n.Value; return nil }
	if err := replayJournal(j, parse, apply); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.close() })
	return j
}

func (o *noteOwner) set(t *testing.T, j *journal, key, value string) {
	t.Helper()
	o.mu.Lock()
	o.notes[key] = value
	line, _ := json.Marshal(noteLine{key, value})
	b := j.append(append(line, '\n'))
	o.mu.Unlock()
	if err := j.wait(b); err != nil {
		t.Fatal(err)
	}
}

func TestJournalKeepsAnyOwnersLines(t *testing.T) {
	dir := t.TempDir()
	o := &noteOwner{}
	j := o.open(t, dir)
	want := map[string]string{}
	for i := range 30 {
		if i%10 == 5 {
			compactJournalOnNextWrite(j)
		}
		key, value := fmt.Sprint("note-", i%7), fmt.Sprint("value-", i)
		o.set(t, j, key, value)
		want[key] = value
	}
	compactJournalOnNextWrite(j) // waits for the last snapshot
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for i, f := range files {
		files[i] = filepath.Base(f)
	}
	if !slices.Equal(files, []string{"notes.journal.000004.jsonl", "notes.snapshot.jsonl", "notes.watermark"}) {
		t.Errorf("files %v; want the owner's snapshot, its newest journal and its watermark, named for it", files)
	}

	reopened := &noteOwner{}
	reopened.open(t, dir)
	if !maps.Equal(reopened.notes, want) {
		t.Errorf("replayed notes %v; want %v", reopened.notes, want)
	}
}

func TestUserStoreCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, time.Now)
	for i := range 50 {
		if i%10 == 0 {
			compactOnNextWrite(s)
		}
		if _, _, err := s.login("wxapp", fmt.Sprintf("o-%d", i), ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.login("wxapp", fmt.Sprintf("o-%d", i/2), "u"); err != nil {
			t.Fatal(err)
		}
	}
	compactOnNextWrite(s)
	if _, _, err := s.login("wxapp", "o-0", ""); err != nil {
		t.Fatal(err)
	}
	want := make([]userRecord, 50)
	for i := range want {
		want[i], _ = s.get(int64(i + 1))
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
		if got, ok := reopened.get(int64(i + 1)); !ok || got != w {
			t.Errorf("after reopen user %d = %+v; want %+v", i+1, got, w)
		}
	}
	if n := reopened.count(); n != 50 {
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
			writeFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), `{"format":"wxlogin-us`)
		}},
		{"empty new journal", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), "")
		}},
		{"snapshot temp file", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, ".users.snapshot.jsonl.tmp123"), `{"format":"wxlogin-users-snapshot","version":1,"gener`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir, time.Now)
			s.login("wxapp", "o-1", "")
			s.login("wxapp", "o-2", "")
			s.Close()
			tt.damage(t, dir)

			s = openTestStore(t, dir, time.Now)
			if n := s.count(); n != 2 {
				t.Fatalf("after recovery %d users; want 2", n)
			}
			if u, created, err := s.login("wxapp", "o-3", ""); err != nil || !created || u.ID != 3 {
				t.Fatalf("login after recovery = %+v, %v, %v; want user 3 created", u, created, err)
			}
			s.Close()
			if n := openTestStore(t, dir, time.Now).count(); n != 3 {
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
			writeFile(t, path, tt.content)
			if tt.name == "torn line in an older journal" {
				writeFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), strings.Replace(header, `"generation":1`, `"generation":2`, 1))
			}
			s, err := openUserStore(dir, testMeta, time.Now, discardLogger(), nil)
			if err == nil {
				s.Close()
				t.Fatal("openUserStore succeeded on a damaged file")
			}
			if !strings.Contains(err.Error(), path+tt.wantLine) {
				t.Errorf("openUserStore = %v; want an error naming %s%s", err, path, tt.wantLine)
			}
			if got, _ := os.ReadFile(path); string(got) != tt.content {
				t.Error("the damaged file was changed; it must be left for the operator")
			}
		})
	}
}

func TestUserStoreWriteFailureIsSticky(t *testing.T) {
	s := openTestStore(t, t.TempDir(), time.Now)
	s.journal.file.Close() // the disk goes away under the store
	if _, _, err := s.login("wxapp", "o-1", ""); err == nil {
		t.Fatal("login succeeded although the journal write failed")
	}
	if _, _, err := s.login("wxapp", "o-2", ""); err == nil {
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
		s, err := openUserStore(dir, testMeta, time.Now, discardLogger(), nil)
		if err != nil {
			return
		}
		n := s.count()
		s.Close()
		s, err = openUserStore(dir, testMeta, time.Now, discardLogger(), nil)
		if err != nil {
			t.Fatalf("a journal that loaded once fails the second time: %v", err)
		}
		defer s.Close()
		if s.count() != n {
			t.Fatalf("second load has %d users; first had %d", s.count(), n)
		}
	})
}

// A line is durable when wait returns, also when its flush started a
// snapshot that is still being written: a start-up from the files as they
// are then (as after a kill -9) has it.
func TestJournalLineIsDurableWhileASnapshotIsWritten(t *testing.T) {
	dir := t.TempDir()
	o := &noteOwner{hold: make(chan struct{})}
	j := o.open(t, dir)
	o.set(t, j, "before", "1")
	compactJournalOnNextWrite(j)
	o.set(t, j, "starts the snapshot", "2")
	o.set(t, j, "after", "3")

	crashed := &noteOwner{}
	crashed.open(t, dir)
	want := map[string]string{"before": "1", "starts the snapshot": "2", "after": "3"}
	if !maps.Equal(crashed.notes, want) {
		t.Errorf("while the snapshot is written, the files hold %v; want %v", crashed.notes, want)
	}
	close(o.hold)
}

// storeText is everything s holds, as the lines of a snapshot: two stores
// hold the same exactly when their texts are equal.
func storeText(s *userStore) string {
	var b strings.Builder
	for line := range s.snapshotLines() {
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
	clock := newFakeClock()
	s, err := openUserStore(dir, testMeta, clock.Now, discardLogger(), nil)
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
		_, _, err := s.login(mockAppID, openID, unionID)
		must(err)
	}
	login("o-1", "u-1")
	_, _, err = s.claim(1, "gift")
	must(err)
	compactOnNextWrite(s)
	login("o-2", "") // rotates to journal 2 and writes the snapshot through 1
	compactOnNextWrite(s)
	s.journal.fault = func(step string) error {
		if step == "snapshot" {
			return fmt.Errorf("%s: %w", step, syscall.ENOSPC)
		}
		return nil
	}
	login("o-3", "u-3") // seals journal 2, moves to 3; the snapshot fails
	_, err = s.update(1, func(u *userRecord) { u.Nickname = "爱丽丝" })
	must(err)
	_, _, err = s.claim(3, "gift")
	must(err)
	s.journal.compactions.Wait()
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
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.Remove(filepath.Join(dir, e.Name()))
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := openUserStore(dir, testMeta, time.Now, discardLogger(), nil)
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
// every line, header and trailer included, has a checksum.) Then wxlogin
// repair -drop must keep every acknowledged user and claim but, at most,
// the flipped line's, and give no id twice. It flips one bit of each byte,
// and repairs one flip in eight; with WXLOGIN_BITFLIP_ALL=1
// (scripts/bitflip, which CI runs) every bit of each byte, each repaired.
func TestEveryBitFlipIsRefused(t *testing.T) {
	everyBit := envSetting(t, "WXLOGIN_BITFLIP_ALL", false, strconv.ParseBool)
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
}

// A snapshot cut at any line boundary, and any journal or the snapshot
// deleted, is refused, naming the file.
func TestCutOrMissingFilesAreRefused(t *testing.T) {
	files, _ := damageFixture(t, t.TempDir())
	scratch := t.TempDir()
	snapshot := files["users.snapshot.jsonl"]
	for at := 0; at < len(snapshot); at++ {
		if at > 0 && snapshot[at-1] != '\n' {
			continue
		}
		damaged := maps.Clone(files)
		damaged["users.snapshot.jsonl"] = snapshot[:at]
		if _, err := openDamaged(t, scratch, damaged); err == nil || !strings.Contains(err.Error(), "users.snapshot.jsonl") {
			t.Errorf("the snapshot cut after byte %d: %v; want it refused, naming it", at, err)
		}
	}
	for name := range files {
		damaged := maps.Clone(files)
		delete(damaged, name)
		if _, err := openDamaged(t, scratch, damaged); err == nil {
			t.Errorf("with %s deleted the store opened; want it refused", name)
		} else if !strings.Contains(err.Error(), "users.") {
			t.Errorf("with %s deleted: %v; want an error naming the files", name, err)
		}
	}
}

// A disk that fills up or fails at any step of a rotation leaves a store
// that opens with every acknowledged record, and a rotation that failed is
// tried again later. Each step fails once: writing half of what it writes,
// as a full disk does, or nothing.
func TestRotationSurvivesAFaultAtEachStep(t *testing.T) {
	steps := []struct {
		step   string
		sticky bool // the write that rotates fails, and every later one
	}{
		{"create", false}, {"header", false}, {"rename", false}, {"sync dir", false},
		{"seal", true}, {"snapshot", false},
	}
	for _, tt := range steps {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO} {
			t.Run(tt.step+"/"+errno.Error(), func(t *testing.T) {
				dir := t.TempDir()
				s, err := openUserStore(dir, testMeta, time.Now, discardLogger(), nil)
				if err != nil {
					t.Fatal(err)
				}
				acked := map[int64]string{} // user id → openid, of every login answered
				login := func(openID string) error {
					u, _, err := s.login(mockAppID, openID, "")
					if err == nil {
						acked[u.ID] = openID
					}
					return err
				}
				for i := range 5 {
					if err := login(fmt.Sprint("o-before-", i)); err != nil {
						t.Fatal(err)
					}
				}
				var failed atomic.Bool // the snapshot step runs on a goroutine of its own
				s.journal.fault = func(step string) error {
					if step != tt.step || !failed.CompareAndSwap(false, true) {
						return nil
					}
					return fmt.Errorf("%s: %w", step, errno)
				}
				compactOnNextWrite(s)
				err = login("o-rotating")
				if gotSticky := err != nil; gotSticky != tt.sticky {
					t.Fatalf("the login that rotates: %v; want a failure %v", err, tt.sticky)
				}
				s.journal.compactions.Wait()
				if !failed.Load() {
					t.Fatalf("the rotation never reached step %s", tt.step)
				}
				if !tt.sticky {
					// The rotation is tried again, and now goes through.
					compactOnNextWrite(s)
					if err := login("o-after"); err != nil {
						t.Fatal(err)
					}
					s.journal.compactions.Wait()
					if _, err := os.Stat(filepath.Join(dir, "users.snapshot.jsonl")); err != nil {
						t.Errorf("no snapshot after the rotation was tried again: %v", err)
					}
				} else if err := login("o-after"); err == nil {
					t.Error("a write after a failed seal succeeded; it cannot be trusted to be durable")
				}
				s.Close()

				// Started again, as after the operator freed the disk: every
				// acknowledged user is there, and the store takes writes.
				reopened := openTestStore(t, dir, time.Now)
				for id, openID := range acked {
					if u, ok := reopened.get(id); !ok || u.OpenID != openID {
						t.Errorf("after a restart user %d is %+v, %v; want the acknowledged %s", id, u, ok, openID)
					}
				}
				if n := reopened.count(); n != len(acked) {
					t.Errorf("after a restart the store holds %d users; want the %d acknowledged", n, len(acked))
				}
				compactOnNextWrite(reopened)
				if _, created, err := reopened.login(mockAppID, "o-later", ""); err != nil || !created {
					t.Errorf("a new user after the restart: created %v, %v", created, err)
				}
			})
		}
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
	writeFile(t, filepath.Join(dir, "users.snapshot.jsonl"), header+u1+claim)
	writeFile(t, filepath.Join(dir, "users.journal.000002.jsonl"), `{"format":"wxlogin-users-journal","version":1,"generation":2}`+"\n"+u2)

	s := openTestStore(t, dir, time.Now)
	if n, claims := s.count(), s.claimsOf(1); n != 2 || len(claims) != 1 {
		t.Fatalf("the old store opens with %d users and claims %v; want 2 and the gift", n, claims)
	}
	u, created, err := s.login(mockAppID, "o-3", "")
	if err != nil || !created || u.ID != 3 {
		t.Fatalf("a new user = %+v, %v, %v; want user 3", u, created, err)
	}
	newest, _ := os.ReadFile(filepath.Join(dir, "users.journal.000003.jsonl"))
	if !bytes.HasPrefix(newest, []byte("h ")) || !bytes.Contains(newest, []byte(`"o-3"`)) {
		t.Errorf("the write went to %q; want a new journal of the current format", newest)
	}
	compactOnNextWrite(s)
	if _, _, err := s.login(mockAppID, "o-4", ""); err != nil {
		t.Fatal(err)
	}
	s.journal.compactions.Wait()
	s.Close()
	snapshot, _ := os.ReadFile(filepath.Join(dir, "users.snapshot.jsonl"))
	if !bytes.HasPrefix(snapshot, []byte("h ")) {
		t.Errorf("the snapshot after compaction starts %q; want the current format", snapshot[:min(20, len(snapshot))])
	}
	if n := openTestStore(t, dir, time.Now).count(); n != 4 {
		t.Errorf("reopened after compaction: %d users; want 4", n)
	}
}

// Files of another store are refused, even with the right names and
// generations; and a new journal with nothing but its header is dropped
// only when the rotation that made it was cut short, before the seal.
func TestJournalFilesBelongTogether(t *testing.T) {
	files, want := damageFixture(t, t.TempDir())
	other, _ := damageFixture(t, t.TempDir()) // the same content, another store
	scratch := t.TempDir()

	h := headerOf(t, files["users.journal.000003.jsonl"])
	mixed := maps.Clone(files)
	mixed["users.journal.000003.jsonl"] = other["users.journal.000003.jsonl"]
	if headerOf(t, other["users.journal.000003.jsonl"]).Store == h.Store {
		t.Fatal("two stores have one id")
	}
	if _, err := openDamaged(t, scratch, mixed); err == nil || !strings.Contains(err.Error(), "users.journal.000003.jsonl:1: a file of another store") {
		t.Errorf("a journal of another store: %v; want it refused", err)
	}

	// Journal 3 sealed, and journal 4 with only its header: the rotation
	// got past the seal, so journal 4 is the newest, and stays.
	sealed := maps.Clone(files)
	j := &journal{name: "users", journalOptions: journalOptions{meta: h.Meta}, store: h.Store}
	var tally lineTally // where journal 3 stands: its lines, and its last checksum
	for i, line := range strings.SplitAfter(string(files["users.journal.000003.jsonl"]), "\n") {
		if _, _, sum, err := splitFramed([]byte(line)); err == nil {
			tally.last = sum
			if i > 0 {
				tally.lines++
			}
		}
	}
	sealed["users.journal.000003.jsonl"] = append(bytes.Clone(files["users.journal.000003.jsonl"]), encodeTrailer(tally)...)
	sealed["users.journal.000004.jsonl"], _ = encodeHeader(j.header(4))
	got, err := openDamaged(t, scratch, sealed)
	if err != nil || got != want {
		t.Errorf("journal 3 sealed and journal 4 empty: %v; want the store as it was", err)
	}
	if _, err := os.Stat(filepath.Join(scratch, "users.journal.000004.jsonl")); err != nil {
		t.Errorf("journal 4, which the seal of 3 calls for, was removed: %v", err)
	}

	// Without the seal, journal 4 is a rotation cut short: it is removed.
	cut := maps.Clone(sealed)
	cut["users.journal.000003.jsonl"] = files["users.journal.000003.jsonl"]
	if got, err := openDamaged(t, scratch, cut); err != nil || got != want {
		t.Errorf("journal 3 unsealed and journal 4 empty: %v; want the store as it was", err)
	}
	if _, err := os.Stat(filepath.Join(scratch, "users.journal.000004.jsonl")); !os.IsNotExist(err) {
		t.Errorf("journal 4, left by a rotation cut short, is still there: %v", err)
	}
}

// headerOf reads a file's header.
func headerOf(t *testing.T, file []byte) fileHeader {
	t.Helper()
	first, _, _ := bytes.Cut(file, []byte("\n"))
	_, text, _, err := readFramed(append(first, '\n'), 0)
	if err != nil {
		t.Fatal(err)
	}
	var h fileHeader
	if err := json.Unmarshal(text, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// A journal of the current format is created whole, so the newest one cut
// short of its header, or emptied, is damage: refused, not rewritten as a
// new empty store.
func TestANewestJournalWithoutItsHeaderIsRefused(t *testing.T) {
	files, _ := damageFixture(t, t.TempDir())
	only := map[string][]byte{"users.journal.000001.jsonl": nil}
	dir := t.TempDir()
	s, err := openUserStore(dir, testMeta, time.Now, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"o-1", "o-2", "o-3"} {
		if _, _, err := s.login(mockAppID, name, ""); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	journal, _ := os.ReadFile(filepath.Join(dir, "users.journal.000001.jsonl"))
	for name, cut := range map[string]map[string][]byte{
		"the only journal cut to 10 bytes": {"users.journal.000001.jsonl": journal[:10]},
		"the only journal cut to 1 byte":   {"users.journal.000001.jsonl": journal[:1]},
		"the only journal emptied":         only,
		"the newest journal cut to 5 bytes": func() map[string][]byte {
			f := maps.Clone(files)
			f["users.journal.000003.jsonl"] = f["users.journal.000003.jsonl"][:5]
			return f
		}(),
	} {
		if got, err := openDamaged(t, t.TempDir(), cut); err == nil {
			t.Errorf("%s: the store opened, holding %q; want it refused", name, got)
		}
	}
}

// A snapshot of another store put among a store's journals is refused
// before anything is removed: the journals it would take as included in
// it are left for the operator.
func TestAForeignSnapshotRemovesNothing(t *testing.T) {
	files, _ := damageFixture(t, t.TempDir())
	other, _ := damageFixture(t, t.TempDir())
	mixed := maps.Clone(files)
	mixed["users.snapshot.jsonl"] = other["users.snapshot.jsonl"] // through 1, of another store
	mixed["users.journal.000001.jsonl"] = []byte("a journal the snapshot would include\n")
	dir := t.TempDir()
	if _, err := openDamaged(t, dir, mixed); err == nil || !strings.Contains(err.Error(), "a file of another store") {
		t.Fatalf("a snapshot of another store: %v; want it refused", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "users.journal.000001.jsonl")); err != nil {
		t.Errorf("a journal was removed before the store was refused: %v", err)
	}
}

// The newest journal cut at any line boundary short of what was
// acknowledged is refused, naming it and the lines missing: the watermark
// records where it stood. Cut at its very end it is whole, and opens.
func TestANewestJournalCutAtALineBoundaryIsRefused(t *testing.T) {
	files, want := damageFixture(t, t.TempDir())
	scratch := t.TempDir()
	const name = "users.journal.000003.jsonl"
	journal := files[name]
	lines := bytes.Count(journal, []byte("\n")) - 1 // after the header
	kept := 0
	for at := 0; at <= len(journal); at++ {
		if at == 0 || journal[at-1] != '\n' {
			continue
		}
		damaged := maps.Clone(files)
		damaged[name] = journal[:at]
		got, err := openDamaged(t, scratch, damaged)
		if at == len(journal) {
			if err != nil || got != want {
				t.Errorf("the whole journal: %v; want the store as it was", err)
			}
			continue
		}
		missing := lines - kept
		wantErr := fmt.Sprintf("%s: cut short: the watermark (users.watermark) records %d acknowledged lines in it, and it holds %d: %d lines are missing",
			filepath.Join(scratch, name), lines, kept, missing)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("the newest journal cut to %d of its %d lines: %v; want %q", kept, lines, err, wantErr)
		}
		kept++
	}

	// wxlogin check says so too, and fails.
	damaged := maps.Clone(files)
	damaged[name], _, _ = bytes.Cut(journal, []byte("\n"))
	damaged[name] = append(damaged[name], '\n') // only its header
	out, err := tool(t, "check", "-data", writeDir(t, damaged))
	if err == nil || !strings.Contains(out, fmt.Sprintf("%d lines are missing", lines)) {
		t.Errorf("wxlogin check of the journal cut to its header = %v:\n%s\nwant it to fail, counting the lines missing", err, out)
	}
}

// The watermark is part of the store: missing, damaged, of another store
// or of another time, it is refused; only the states a crash leaves pass.
func TestTheWatermarkBelongsToItsStore(t *testing.T) {
	files, want := damageFixture(t, t.TempDir())
	other, _ := damageFixture(t, t.TempDir())
	scratch := t.TempDir()
	h := headerOf(t, files["users.journal.000003.jsonl"])
	mark := func(gen, lines int64, last uint32) []byte {
		return appendMark(nil, markFor(h.Store, gen, lineTally{lines: lines, last: last}))
	}
	refused := map[string]struct {
		mark    []byte // nil: none
		wantErr string
	}{
		"missing":          {nil, "users.watermark: missing"},
		"of another store": {other["users.watermark"], "users.watermark:1: a file of another store"},
		"of journal 2, which is sealed and followed by lines":                  {mark(2, 1, 0), "records journal 2, and the journals run from 2 to 3"},
		"of journal 5, with lines":                                             {mark(5, 1, 0), "records journal 5"},
		"of journal 4, with no lines, after a journal 3 of the current format": {mark(4, 0, 0), "records journal 4"},
		"naming another line":                                                  {mark(3, 2, 0xdeadbeef), "users.journal.000003.jsonl:3: not the line the watermark (users.watermark) records there"},
		"cut short":                                                            {files["users.watermark"][:markSize-1], fmt.Sprintf("users.watermark:1: %d bytes", markSize-1)},
		"longer than a watermark":                                              {append(bytes.Clone(files["users.watermark"]), '\n'), fmt.Sprintf("users.watermark:1: %d bytes", markSize+1)},
		"a trailer in its place":                                               {encodeTrailer(lineTally{}), "users.watermark:1:"},
		"records a negative count":                                             {appendMark(nil, fileMark{Store: h.Store, Generation: 3, Lines: -1, CRC32C: "00000000"}), "out of range"},
	}
	for name, tt := range refused {
		damaged := maps.Clone(files)
		damaged["users.watermark"] = tt.mark
		if tt.mark == nil {
			delete(damaged, "users.watermark")
		}
		if _, err := openDamaged(t, scratch, damaged); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("a watermark %s: %v; want it refused with %q", name, err, tt.wantErr)
		}
	}

	// An older watermark of the same journal vouches for less, and passes:
	// it is what a power cut before its last write leaves.
	older := maps.Clone(files)
	older["users.watermark"] = mark(3, 0, h.sum(t, files["users.journal.000003.jsonl"]))
	if got, err := openDamaged(t, scratch, older); err != nil || got != want {
		t.Errorf("a watermark of journal 3 at its header: %v; want the store as it was", err)
	}
}

// sum is the checksum of the header line of file, which h is.
func (h fileHeader) sum(t *testing.T, file []byte) uint32 {
	t.Helper()
	first, _, _ := bytes.Cut(file, []byte("\n"))
	_, _, sum, err := readFramed(append(first, '\n'), 0)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// reframed is a file of the current format rewritten as version, every
// line chained anew from its header.
func reframed(t *testing.T, file []byte, version int) []byte {
	t.Helper()
	var out []byte
	var prev uint32
	for i, line := range bytes.SplitAfter(file, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		kind, text, _, err := splitFramed(line)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			var h fileHeader
			if err := json.Unmarshal(text, &h); err != nil {
				t.Fatal(err)
			}
			h.Version = version
			text, _ = json.Marshal(h)
			text = append(text, '\n')
		}
		if kind == kindTrailer {
			var tr fileTrailer
			json.Unmarshal(text, &tr)
			tr.CRC32C = fmt.Sprintf("%08x", prev)
			text, _ = json.Marshal(tr)
			text = append(text, '\n')
		}
		out, prev = appendFramed(out, prev, kind, text)
	}
	return out
}

// A store of version 2, which kept no watermark, opens with everything in
// it; its newest journal is sealed, writes go to a new journal of the
// current format with a watermark beside it, and from then on the store is
// held to it. A crash at any step of that move leaves a store that opens.
func TestAStoreOfVersion2OpensAndMovesOn(t *testing.T) {
	files, want := damageFixture(t, t.TempDir())
	v2 := map[string][]byte{}
	for name, data := range files {
		if name != "users.watermark" {
			v2[name] = reframed(t, data, 2)
		}
	}
	for _, crash := range []string{"", "mark", "create", "seal"} {
		t.Run("crash at "+crash, func(t *testing.T) {
			dir := writeDir(t, v2)
			if crash != "" {
				// Opened by a wxlogin killed at that step: the move was cut short.
				j, err := openJournal(dir, "users", journalOptions{meta: headerOf(t, v2["users.snapshot.jsonl"]).Meta, log: discardLogger()})
				if err != nil {
					t.Fatal(err)
				}
				s := newMemoryUserStore()
				j.fault = func(step string) error {
					if step == crash || (crash == "create" && step == "header") {
						return errors.New("killed")
					}
					return nil
				}
				if crash == "seal" {
					j.fault = func(step string) error {
						if step == "seal" {
							return errors.New("killed")
						}
						return nil
					}
				}
				if err := replayJournal(j, parseStoredLine, s.replay); err == nil {
					t.Fatalf("the move did not reach step %s", crash)
				}
				j.close()
			}
			s := openTestStore(t, dir, time.Now)
			if got := storeText(s); got != want {
				t.Fatalf("the store of version 2 opens holding\n%s\nwant\n%s", got, want)
			}
			if _, _, err := s.login(mockAppID, "o-new", ""); err != nil {
				t.Fatal(err)
			}
			s.Close()
			sealed, _ := os.ReadFile(filepath.Join(dir, "users.journal.000003.jsonl"))
			if headerOf(t, sealed).Version != 2 || !bytes.HasPrefix(sealed[bytes.LastIndexByte(sealed[:len(sealed)-1], '\n')+1:], []byte("t ")) {
				t.Errorf("journal 3 of version 2 is\n%s\nwant it sealed, of version 2 still", sealed)
			}
			newest, _ := os.ReadFile(filepath.Join(dir, "users.journal.000004.jsonl"))
			if headerOf(t, newest).Version != formatVersion || !bytes.Contains(newest, []byte(`"o-new"`)) {
				t.Errorf("the write went to\n%s\nwant journal 4, of version %d", newest, formatVersion)
			}
			if s := openTestStore(t, dir, time.Now); s.count() != strings.Count(want, `"openid"`)+1 {
				t.Errorf("reopened: %d users", s.count())
			}
			os.Remove(filepath.Join(dir, "users.watermark"))
			if s, err := openUserStore(dir, testMeta, time.Now, discardLogger(), nil); err == nil {
				s.Close()
				t.Error("with journal 4 of the current format, the store opened without its watermark")
			}
		})
	}
}

// Every journal is written with O_APPEND: a write lands at the end of the
// file whatever else wrote to it, never over another's lines.
func TestJournalsAreWrittenAppendOnly(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, time.Now)
	for i := range 2 {
		if _, _, err := s.login(mockAppID, fmt.Sprint("o-", i), ""); err != nil {
			t.Fatal(err)
		}
		appendOnly(t, s.journal.file)
		compactOnNextWrite(s) // the second login writes to a journal a rotation made
	}
	s.Close()
	appendOnly(t, openTestStore(t, dir, time.Now).journal.file) // one reopened
}

// appendOnly fails t unless f is open with O_APPEND, as Linux says.
func appendOnly(t *testing.T, f *os.File) {
	t.Helper()
	info, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f.Fd()))
	if err != nil {
		t.Skipf("no /proc to read the file's flags from: %v", err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		if flags, ok := strings.CutPrefix(line, "flags:"); ok {
			if v, err := strconv.ParseInt(strings.TrimSpace(flags), 8, 64); err != nil || v&syscall.O_APPEND == 0 {
				t.Errorf("%s is open with flags %s; want O_APPEND", f.Name(), strings.TrimSpace(flags))
			}
			return
		}
	}
	t.Errorf("no flags for %s in /proc", f.Name())
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
// flipped, to dir and repairs it with wxlogin repair -drop. What the
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
	var record storedLine // what the flipped line held, if a record
	if _, text, _, err := splitFramed(flipped); err == nil && flipped[0] == kindRecord {
		record, _ = parseStoredLine(text)
	}
	mayLose := func(l storedLine) bool {
		switch {
		case record.user != nil && l.user != nil:
			return l.user.ID == record.user.ID
		case record.user != nil && l.claim != nil:
			return l.claim.UserID == record.user.ID
		case record.claim != nil && l.claim != nil:
			return *l.claim == *record.claim
		}
		return false
	}
	if out, err := tool(t, "repair", "-data", dir, "-drop"); err != nil {
		t.Errorf("repair -drop after a flip in %q = %v:\n%s", flipped, err, out)
		return false
	}
	s, err := openUserStore(dir, testMeta, time.Now, discardLogger(), nil)
	if err != nil {
		t.Errorf("the store repaired after a flip in %q does not open: %v", flipped, err)
		return false
	}
	defer s.Close()
	got := storeLines(s)
	whole, top := true, int64(0)
	for line := range want {
		l, _ := parseStoredLine([]byte(line)) // a line of the store before the flip
		if l.user != nil {
			top = max(top, l.user.ID)
			if u, ok := s.get(l.user.ID); ok && u.ref() != l.user.ref() {
				t.Errorf("after a flip in %q and a repair, user %d is %s; it was %s", flipped, u.ID, u.OpenID, l.user.OpenID)
			}
		}
		if !got[line] {
			whole = false
			if !mayLose(l) {
				t.Errorf("a flip in %q, repaired, lost %s", flipped, line)
			}
		}
	}
	if u, created, err := s.login(mockAppID, "o-after-the-repair", ""); err != nil || !created || u.ID <= top {
		t.Errorf("after a flip in %q and a repair, a new user = user %d, %v, %v; want an id past %d", flipped, u.ID, created, err, top)
	}
	return whole
}

// FuzzParseMark feeds arbitrary bytes to the watermark's reader: it must
// read them or refuse them, never panic, and what it reads must be
// written back to the same bytes.
func FuzzParseMark(f *testing.F) {
	f.Add(appendMark(nil, fileMark{Store: "47f8d465bf067028", Generation: 3, Lines: 1203, CRC32C: "5e0f3a1c"}))
	f.Add(appendMark(nil, fileMark{Store: "x", Generation: 1, Lines: 0, CRC32C: "00000000"}))
	f.Add([]byte("w 00000000 {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMark(data)
		if err != nil {
			return
		}
		if again := appendMark(nil, m); !bytes.Equal(again, data) {
			t.Fatalf("parseMark(%q) = %+v, which is written %q", data, m, again)
		}
	})
}

// FuzzRepairJournal feeds arbitrary journal contents to what wxlogin
// repair reads of a store: it must keep what it can, never panic, and what
// it keeps must be a store a start-up would take, line for line.
func FuzzRepairJournal(f *testing.F) {
	dir := f.TempDir()
	s, err := openUserStore(dir, testMeta, newFakeClock().Now, discardLogger(), nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, openID := range []string{"o-1", "o-2", "o-3"} {
		if u, _, err := s.login(mockAppID, openID, "u-"+openID); err == nil {
			s.claim(u.ID, "gift")
		}
	}
	s.Close()
	journal, err := os.ReadFile(filepath.Join(dir, "users.journal.000001.jsonl"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(journal)
	damaged := bytes.Clone(journal)
	damaged[len(damaged)/2] ^= 0x10
	f.Add(damaged)
	f.Add(journal[:len(journal)/2])
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "users.journal.000001.jsonl"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := openJournal(dir, "users", journalOptions{readOnly: true, log: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		salvaged := newSalvagedStore()
		salvaged.finish(salvageJournal(j, parseStoredLine, salvaged.apply, salvaged.lostLine), time.Now())
		fresh := newMemoryUserStore()
		for line := range salvaged.snapshotLines() {
			l, err := parseStoredLine(line)
			if err == nil {
				err = fresh.replay(l)
			}
			if err != nil {
				t.Fatalf("a repair keeps %q, which a start-up refuses: %v", line, err)
			}
		}
	})
}
