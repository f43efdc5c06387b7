package testkit

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// WriteFile writes content to path, readable by its owner only, as
// wxlogin writes its files.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// PutFiles makes dir hold files, by name, and nothing else, each readable
// by its owner only; it returns dir.
func PutFiles(t testing.TB, dir string, files map[string][]byte) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// AssertPrivate fails t unless the file at path is 0600, readable by its
// owner only.
func AssertPrivate(t testing.TB, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %04o; want 0600", path, perm)
	}
}

// FilesHolding reports which of needles some file under dir holds, each
// as "file: needle", to show what is on the disk (a secret that must not
// be).
func FilesHolding(t testing.TB, dir string, needles ...string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err // a file the test cannot read could hold anything
		}
		for _, n := range needles {
			if bytes.Contains(data, []byte(n)) {
				rel, _ := filepath.Rel(dir, path)
				found = append(found, rel+": "+n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	return found
}

// DamagedStores are the files of a store (a snapshot, a sealed journal,
// the newest journal and a watermark, by name) damaged in each way the
// store's tests try, each once, by what was done to them.
func DamagedStores(files map[string][]byte) map[string]map[string][]byte {
	flip := func(name string, at int) map[string][]byte {
		damaged := maps.Clone(files)
		damaged[name] = bytes.Clone(files[name])
		damaged[name][at] ^= 0x04
		return damaged
	}
	without := func(name string) map[string][]byte {
		damaged := maps.Clone(files)
		delete(damaged, name)
		return damaged
	}
	snapshot := files["users.snapshot.jsonl"]
	cut := maps.Clone(files)
	cut["users.snapshot.jsonl"] = snapshot[:bytes.LastIndexByte(snapshot[:len(snapshot)-1], '\n')+1]
	return map[string]map[string][]byte{
		"a bit flipped in the snapshot":       flip("users.snapshot.jsonl", len(snapshot)/2),
		"a bit flipped in a sealed journal":   flip("users.journal.000002.jsonl", 200),
		"a bit flipped in the newest journal": flip("users.journal.000003.jsonl", 200),
		"the snapshot cut at a line":          cut,
		"the snapshot deleted":                without("users.snapshot.jsonl"),
		"a sealed journal deleted":            without("users.journal.000002.jsonl"),
		"the newest journal deleted":          without("users.journal.000003.jsonl"),
	}
}

// SyncBuffer is a bytes.Buffer safe for a logger or a server's output
// writing while a test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
