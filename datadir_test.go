package main

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Two real processes on one data directory: the second exits at once,
// non-zero, saying which directory (and, while the lock file is there,
// which pid) holds it; the first goes on serving. Deleting the lock file
// under the first, or making it anew, lets no second one in: the
// directory itself is locked.
func TestASecondWxloginOnOneDirectoryExitsAtOnce(t *testing.T) {
	for _, tt := range []struct {
		name    string
		damage  func(t *testing.T, lockPath string)
		withPid bool // the second can still name the first's pid
	}{
		{"as it is", func(*testing.T, string) {}, true},
		{"its lock file deleted", func(t *testing.T, lockPath string) {
			if err := os.Remove(lockPath); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"its lock file deleted and made again", func(t *testing.T, lockPath string) {
			if err := os.Remove(lockPath); err != nil {
				t.Fatal(err)
			}
			writeFile(t, lockPath, "")
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := startChild(t, dir)
			tt.damage(t, filepath.Join(dir, lockFileName))

			second := exec.Command(childBinary(), "-addr", "127.0.0.1:0", "-data", dir)
			second.Env = []string{"WXLOGIN_TEST_CHILD=1"}
			logs := &syncBuffer{}
			second.Stderr = logs
			start := time.Now()
			if err := second.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- second.Wait() }()
			select {
			case err := <-exited:
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() == 0 {
					t.Errorf("the second wxlogin exited with %v; want a failure", err)
				}
				t.Logf("the second wxlogin exited in %v", time.Since(start).Round(time.Millisecond))
			case <-time.After(time.Second):
				second.Process.Kill()
				<-exited
				t.Fatalf("a second wxlogin on %s still ran after 1 s:\n%s", dir, logs.String())
			}
			msg := logs.String()
			want := []string{dir, "in use by another wxlogin"}
			if tt.withPid {
				want = append(want, "pid "+strconv.Itoa(first.cmd.Process.Pid))
			}
			for _, want := range want {
				if !strings.Contains(msg, want) {
					t.Errorf("the second wxlogin said %q; want it to name %q", msg, want)
				}
			}
			if _, err := tool(t, "check", "-data", dir); !errors.Is(err, errDataDirInUse) {
				t.Errorf("wxlogin check on the directory in use = %v; want it refused", err)
			}

			got := post(t, http.MethodPost, first.url+"/login", jsonCT, `{"code":"`+mockCode(t, first.url, "alice")+`"}`)
			if got.env.Status != 0 {
				t.Errorf("after the second one left, a login to the first = %s; want it served", got.raw)
			}
		})
	}
}

// The lock is the kernel's and per open file: a second opening in one
// process is refused too, and release gives the directory up.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	d, err := openDataDir(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openDataDir(dir, discardLogger()); !errors.Is(err, errDataDirInUse) {
		t.Errorf("a second openDataDir = %v; want errDataDirInUse", err)
	}
	if _, err := inspectDataDir(dir); !errors.Is(err, errDataDirInUse) {
		t.Errorf("inspecting a directory in use = %v; want errDataDirInUse", err)
	}
	if err := d.release(); err != nil {
		t.Fatal(err)
	}
	again, err := openDataDir(dir, discardLogger())
	if err != nil {
		t.Fatalf("after release, openDataDir = %v", err)
	}
	again.release()
	if pid, _ := os.ReadFile(filepath.Join(dir, lockFileName)); strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
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
		writeFile(t, filepath.Join(dir, name), "x")
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, ".tokens.json.tmp123"), `{"user_id":1,"session_key":"…"}`)
	logs := &syncBuffer{}
	d, err := openDataDir(dir, textLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer d.release()

	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("the directory is %04o; want 0700", info.Mode().Perm())
	}
	for _, name := range []string{"users.journal.000001.jsonl", "tokens.json", "users.snapshot.jsonl", lockFileName} {
		assertPrivate(t, filepath.Join(dir, name))
	}
	if n := strings.Count(logs.String(), "making a file others could read private"); n != 3 {
		t.Errorf("%d warnings of files made private; want 3 (the directory and two files):\n%s", n, logs)
	}
	if _, err := os.Stat(filepath.Join(dir, ".tokens.json.tmp123")); !os.IsNotExist(err) {
		t.Errorf("the temporary token file is still there: %v", err)
	}
}

// Once a write fails, every write and /healthz answer 503 with status -1
// and Retry-After, the log says so once, at error level, naming the
// journal by its name, and a graceful stop exits non-zero. The disk fills
// up for real: the server runs under a limit on the size of its files.
func TestAStoreThatFailedIsUnhealthyAndStopsWithAnError(t *testing.T) {
	dir := t.TempDir()
	c := startLimitedProcess(t, "-f 16", nil, "-addr", "127.0.0.1:0", "-data", dir, "-login-rate", "0")
	unavailable := func(what string, got reply) {
		t.Helper()
		if got.code != http.StatusServiceUnavailable || got.env.Status != statusInternal || got.env.Msg != msgStoreFailed ||
			got.header.Get("Retry-After") == "" {
			t.Errorf("%s = %d %s (Retry-After %q); want 503 with status -1, %q and Retry-After",
				what, got.code, got.raw, got.header.Get("Retry-After"), msgStoreFailed)
		}
	}
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("1000 new users fit in a journal of at most 16 KiB")
		}
		got := post(t, http.MethodPost, c.url+"/login", jsonCT, `{"code":"`+mockCode(t, c.url, "user-"+strconv.Itoa(i))+`"}`)
		if got.env.Status == statusInternal {
			unavailable("the login whose write failed", got)
			break
		}
		if got.env.Status != 0 {
			t.Fatalf("login %d = %s; want it served or, once the disk is full, status -1", i, got.raw)
		}
	}
	unavailable("GET /healthz after a failed write", post(t, http.MethodGet, c.url+"/healthz", "", ""))
	unavailable("a login after the failure (no write is trusted any more)",
		post(t, http.MethodPost, c.url+"/login", jsonCT, `{"code":"`+mockCode(t, c.url, "later")+`"}`))
	err := c.terminate(t)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Errorf("after SIGTERM wxlogin exited with %v; want a failure, as its store had failed", err)
	}
	logs := c.logs.String()
	if n := strings.Count(logs, `level=ERROR msg="journal: a write failed`); n != 1 {
		t.Errorf("%d error lines say the store failed; want 1:\n%s", n, logs)
	}
	// The journal is named as it is on disk, not by the temporary name it
	// was created under, a file that no longer exists.
	if !strings.Contains(logs, filepath.Join(dir, "users.journal.000001.jsonl")) || strings.Contains(logs, ".users.journal") {
		t.Errorf("the error lines name the journal as\n%s\nwant %s", logs, filepath.Join(dir, "users.journal.000001.jsonl"))
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
		err := createDataDir(dir, "restore", func(tmp string) error {
			writeFile(t, filepath.Join(tmp, "users.journal.000001.jsonl"), "half a store")
			return failed
		})
		if !errors.Is(err, failed) {
			t.Fatalf("createDataDir with a fill that fails = %v", err)
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
		writeFile(t, filepath.Join(killed, "users.journal.000001.jsonl"), "half a store")
		underWay, err := openDataDir(filepath.Join(parent, ".restored.restore-2"), discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		err = createDataDir(dir, "restore", func(tmp string) error {
			writeFile(t, filepath.Join(tmp, "users.journal.000001.jsonl"), "a store")
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
		underWay.release()
		if err := createDataDir(dir, "restore", func(string) error { return nil }); err == nil {
			t.Error("createDataDir over a directory that holds a store succeeded")
		}
	}
}
