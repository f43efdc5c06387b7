package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
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
	j, err := openJournal(dir, "notes", o.snapshot, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	o.notes = map[string]string{}
	parse := func(line []byte) (noteLine, error) {
		var n noteLine
		return n, decodeStrict(line, &n)
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
	if !slices.Equal(files, []string{"notes.journal.000004.jsonl", "notes.snapshot.jsonl"}) {
		t.Errorf("files %v; want the owner's snapshot and its newest journal, named for it", files)
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
	if !bytes.HasPrefix(snapshot, []byte(`{"format":"wxlogin-users-snapshot"`)) {
		t.Errorf("snapshot starts %q", snapshot[:40])
	}
	if lines := bytes.Count(snapshot, []byte("\n")); lines != 1+50 {
		t.Errorf("snapshot has %d lines; want a header and each of the 50 users once", lines)
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
			s, err := openUserStore(dir, time.Now, discardLogger())
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
		s, err := openUserStore(dir, time.Now, discardLogger())
		if err != nil {
			return
		}
		n := s.count()
		s.Close()
		s, err = openUserStore(dir, time.Now, discardLogger())
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
