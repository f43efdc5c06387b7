package users

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/fakewechat"
)

// This file holds what the store's tests share: a clock that tests move,
// the stores they open, the files they write and damage, and the repair as
// wxlogin repair -drop makes it. The root's tests drive the same store
// through the server and the tools.

// discardLogger logs nothing.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// mockAppID is the app of mock mode, as wxlogin's own tests use it.
const mockAppID = "wxfa4e000000000000"

// testMeta is what the stores of tests record of their configuration:
// mock mode, as the servers the root's tests start are in, with its one app.
var testMeta = account.Meta{Mode: account.ModeMock, AppIDs: []string{mockAppID}}

// openTestStore opens a user store in dir, closing it when the test ends.
func openTestStore(t testing.TB, dir string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(dir, testMeta, now, discardLogger(), nil)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// benchOpenID is the openid of the ith user of the benchmarks: WeChat's
// length and alphabet, as the fake makes them.
func benchOpenID(i int) string { return fakewechat.OpenID("wxbench", strconv.Itoa(i)) }

// envSetting reads a test setting from the environment with parse (such
// as strconv.Atoi), or gives def when it is not set.
func envSetting[T any](t *testing.T, name string, def T, parse func(string) (T, error)) T {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	value, err := parse(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return value
}

// writeDir writes files as the whole content of a new data directory.
func writeDir(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// filesHold reports which of needles some file in dir holds, to show what
// is on the disk.
func filesHold(t *testing.T, dir string, needles ...string) []string {
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
		t.Fatalf("reading the data directory: %v", err)
	}
	return found
}

// damagedDirs are data directories damaged in each way the journal's
// tests try, by name: damageFixture's files, each damaged once.
func damagedDirs(t *testing.T) map[string]map[string][]byte {
	t.Helper()
	files, _ := damageFixture(t, t.TempDir())
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

// repairDrop repairs the store in dir as wxlogin repair -drop does
// (datatools.go), but for keeping the damaged files aside, which is the
// tool's and tested with it: it writes what Salvage keeps in place of the
// damaged files. It returns what the tool says, less its counts: why the
// store does not check out, then each line corrected, each line dropped,
// and the notes, one a line, indented.
func repairDrop(dir string) (string, error) {
	var out strings.Builder
	if s, _, err := Inspect(dir); err == nil {
		s.Close()
		return fmt.Sprintf("%s checks out: nothing to repair\n", dir), nil
	} else {
		fmt.Fprintf(&out, "%s does not check out:\n  %v\n", dir, err)
	}
	r, err := Salvage(dir, time.Now())
	if err != nil {
		return out.String(), err
	}
	for _, c := range r.Corrected {
		fmt.Fprintf(&out, "  corrects %s\n", c)
	}
	for _, l := range r.Dropped {
		fmt.Fprintf(&out, "  drops %s\n", l)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&out, "  %s\n", n)
	}
	if err := r.Replace(dir); err != nil {
		return out.String(), err
	}
	if s, _, err := Inspect(dir); err != nil {
		return out.String(), fmt.Errorf("the repaired store does not check out: %w", err)
	} else {
		s.Close()
	}
	return out.String(), nil
}
