package datadir

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"wxlogin/internal/testkit"
)

// The lock is the kernel's and per open file: a second opening in one
// process is refused too, and release gives the directory up.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrInUse) {
		t.Errorf("a second Open = %v; want ErrInUse", err)
	}
	if _, err := Inspect(dir); !errors.Is(err, ErrInUse) {
		t.Errorf("inspecting a directory in use = %v; want ErrInUse", err)
	}
	if err := d.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("after Release, Open = %v", err)
	}
	again.Release()
	if pid, _ := os.ReadFile(filepath.Join(dir, LockFileName)); strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("the lock file holds %q; want this process's pid", pid)
	}
}

// What a data directory holds is made private at start-up, with a warning
// for each file changed, and the temporary token file a crash left is
// removed.
func TestOpenDataDirMakesItPrivateAndRemovesDebris(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"users.journal.000001.jsonl": 0o644, "tokens.json": 0o640, "users.snapshot.jsonl": 0o600} {
		testkit.WriteFile(t, filepath.Join(dir, name), "x")
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WriteFile(t, filepath.Join(dir, ".tokens.json.tmp123"), `{"user_id":1,"session_key":"…"}`)
	logs := &strings.Builder{}
	d, err := Open(dir, slog.New(slog.NewTextHandler(logs, nil)), "tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()

	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("the directory is %04o; want 0700", info.Mode().Perm())
	}
	for _, name := range []string{"users.journal.000001.jsonl", "tokens.json", "users.snapshot.jsonl", LockFileName} {
		testkit.AssertPrivate(t, filepath.Join(dir, name))
	}
	if n := strings.Count(logs.String(), "making a file others could read private"); n != 3 {
		t.Errorf("%d warnings of files made private; want 3 (the directory and two files):\n%s", n, logs)
	}
	if _, err := os.Stat(filepath.Join(dir, ".tokens.json.tmp123")); !os.IsNotExist(err) {
		t.Errorf("the temporary token file is still there: %v", err)
	}
}

// A tool makes a data directory whole or not at all: a fill that fails
// leaves the target as it was (absent, or empty) and nothing beside it; a
// run killed midway leaves its work hidden beside the target, which the
// next run removes, unless a run under way holds it.
func TestCreateDataDirIsWholeOrNothing(t *testing.T) {
	for _, empty := range []bool{false, true} {
		parent := t.TempDir()
		dir := filepath.Join(parent, "restored")
		if empty {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		failed := errors.New("the fill failed")
		err := Create(dir, "restore", func(tmp string) error {
			testkit.WriteFile(t, filepath.Join(tmp, "users.journal.000001.jsonl"), "half a store")
			return failed
		})
		if !errors.Is(err, failed) {
			t.Fatalf("Create with a fill that fails = %v", err)
		}
		entries, _ := os.ReadDir(parent)
		if want := map[bool]int{false: 0, true: 1}[empty]; len(entries) != want {
			t.Errorf("after a fill that failed, %s holds %v; want the target as it was", parent, dirNames(entries))
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("after a fill that failed, the target holds %v", dirNames(entries))
		}

		// A run killed midway, and one under way.
		killed := filepath.Join(parent, ".restored.restore-1")
		if err := os.Mkdir(killed, 0o700); err != nil {
			t.Fatal(err)
		}
		testkit.WriteFile(t, filepath.Join(killed, "users.journal.000001.jsonl"), "half a store")
		underWay, err := Open(filepath.Join(parent, ".restored.restore-2"), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		err = Create(dir, "restore", func(tmp string) error {
			testkit.WriteFile(t, filepath.Join(tmp, "users.journal.000001.jsonl"), "a store")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "users.journal.000001.jsonl")); string(got) != "a store" {
			t.Errorf("the target holds %q; want the store filled", got)
		}
		entries, _ = os.ReadDir(parent)
		if names := dirNames(entries); !slices.Equal(names, []string{".restored.restore-2", "restored"}) {
			t.Errorf("beside the target: %v; want the run killed midway removed, the one under way left", names)
		}
		underWay.Release()
		if err := Create(dir, "restore", func(string) error { return nil }); err == nil {
			t.Error("Create over a directory that holds a store succeeded")
		}
	}
}

// dirNames are the names of entries.
func dirNames(entries []os.DirEntry) []string {
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
