package main

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/datadir"
	"wxlogin/internal/testkit"
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
			testkit.WriteFile(t, lockPath, "")
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := startChild(t, dir)
			tt.damage(t, filepath.Join(dir, datadir.LockFileName))

			second := exec.Command(childBinary(), "-addr", "127.0.0.1:0", "-data", dir)
			second.Env = []string{"WXLOGIN_TEST_CHILD=1"}
			logs := &testkit.SyncBuffer{}
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
			if _, err := tool(t, "check", "-data", dir); !errors.Is(err, datadir.ErrInUse) {
				t.Errorf("wxlogin check on the directory in use = %v; want it refused", err)
			}

			got := post(t, http.MethodPost, first.url+"/login", jsonCT, `{"code":"`+mockCode(t, first.url, "alice")+`"}`)
			if got.env.Status != 0 {
				t.Errorf("after the second one left, a login to the first = %s; want it served", got.raw)
			}
		})
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
