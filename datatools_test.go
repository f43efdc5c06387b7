package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/config"
	"wxlogin/internal/datadir"
	"wxlogin/internal/events"
	"wxlogin/internal/testkit"
	"wxlogin/internal/tools"
	"wxlogin/internal/users"
)

// tool runs a tool as the command line would: wxlogin <args…>.
func tool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"wxlogin"}, args...), func(string) string { return "" }, &out, &errOut)
	return out.String() + errOut.String(), err
}

// fixtureDir holds internal/users' damageFixture, checked in: a small
// store with one file of each kind a store keeps (a snapshot, a journal
// sealed when writes moved on, its snapshot having failed, and the newest
// journal), with users, claims and updates in each; and what it holds, as
// wxlogin export writes it, in export.jsonl. The store's tests check that
// it is the fixture they make.
const fixtureDir = "internal/users/testdata/store"

// damageFixture is the checked-in fixture's files, by name, and what they
// hold.
func damageFixture(t *testing.T) (files map[string][]byte, want string) {
	t.Helper()
	entries, err := os.ReadDir(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	files = map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(fixtureDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "export.jsonl" {
			want = string(data)
		} else {
			files[e.Name()] = data
		}
	}
	if len(files) != 4 || want == "" {
		t.Fatalf("%s holds %d files of a store and an export of %d bytes; want 4, and what they hold", fixtureDir, len(files), len(want))
	}
	return files, want
}

// wxlogin check reports a healthy store and every kind of damage, and
// changes nothing either way.
func TestCheckReportsWhatAStoreHoldsAndEveryDamage(t *testing.T) {
	files, _ := damageFixture(t)
	dir := testkit.PutFiles(t, t.TempDir(), files)
	out, err := tool(t, "check", "-data", dir)
	if err != nil || !strings.Contains(out, "3 users (3 persons) and 2 claims, created in mock mode") || !strings.Contains(out, "ok") {
		t.Errorf("check of a healthy store = %v:\n%s", err, out)
	}
	for name, damaged := range testkit.DamagedStores(files) {
		dir := testkit.PutFiles(t, t.TempDir(), damaged)
		out, err := tool(t, "check", "-data", dir)
		if err == nil || !strings.Contains(out, "is damaged") || !regexp.MustCompile(`users\.[a-z]+(\.\d+)?\.jsonl`).MatchString(out) {
			t.Errorf("%s: check = %v:\n%s\nwant the damage reported, naming the file", name, err, out)
		}
		for file, data := range damaged {
			if got, _ := os.ReadFile(filepath.Join(dir, file)); !bytes.Equal(got, data) {
				t.Errorf("%s: check changed %s", name, file)
			}
		}
	}
}

// A store a server is running on is not checked, exported or repaired:
// the server owns it, and its files change under the reader.
func TestToolsRefuseADirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	startChild(t, dir)
	for _, name := range []string{"check", "export", "repair"} {
		if out, err := tool(t, name, "-data", dir); err == nil || !strings.Contains(err.Error(), "in use by another wxlogin") {
			t.Errorf("wxlogin %s on a directory in use = %v:\n%s", name, err, out)
		}
	}
}

// wxlogin export writes the users, then the claims, as JSON lines.
func TestExportWritesUsersThenClaims(t *testing.T) {
	files, want := damageFixture(t)
	out, err := tool(t, "export", "-data", testkit.PutFiles(t, t.TempDir(), files))
	if err != nil || out != want {
		t.Errorf("export = %v:\n%s\nwant:\n%s", err, out, want)
	}
}

// A backup of a running server, taken while new users log in and claim a
// gift, restores into a directory that checks out and that a server then
// starts on, with every user and claim acknowledged before the backup
// began.
func TestBackupOfARunningServerRestoresWhole(t *testing.T) {
	dir := t.TempDir()
	c := startProcess(t, nil, "-addr", "127.0.0.1:0", "-data", dir, "-login-rate", "0", "-admin-addr", "127.0.0.1:0")
	m := regexp.MustCompile(`msg="admin listening" url=(http://[^/]+)/`).FindStringSubmatch(c.logs.String())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", c.logs.String())
	}
	users := newNewUsers()
	stop := users.keepComing(c.url, 4, "b")
	testkit.WaitFor(t, "a first hundred users", func() bool { return users.count() >= 100 })
	users.mu.Lock()
	before, giftsBefore := maps.Clone(users.acked), maps.Clone(users.claimed)
	users.mu.Unlock()
	backup := filepath.Join(t.TempDir(), "backup.jsonl")
	out, err := tool(t, "backup", "-from", m[1], "-to", backup)
	stop()
	if err != nil {
		t.Fatalf("backup during logins = %v:\n%s", err, out)
	}
	t.Logf("backup: %s", strings.TrimSpace(out))

	restored := filepath.Join(t.TempDir(), "restored")
	if out, err := tool(t, "restore", "-from", backup, "-data", restored); err != nil {
		t.Fatalf("restore = %v:\n%s", err, out)
	}
	if out, err := tool(t, "check", "-data", restored); err != nil {
		t.Fatalf("check of the restored store = %v:\n%s", err, out)
	}
	if out, err := tool(t, "restore", "-from", backup, "-data", restored); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a restore over a store = %v:\n%s\nwant it refused", err, out)
	}
	web := t.TempDir()
	testkit.WriteFile(t, filepath.Join(web, "index.html"), "<p>hello</p>")
	os.Chmod(filepath.Join(web, "index.html"), 0o644)
	if out, err := tool(t, "restore", "-from", backup, "-data", web); err == nil {
		t.Errorf("a restore into a directory of something else = %v:\n%s\nwant it refused", err, out)
	}
	if info, _ := os.Stat(filepath.Join(web, "index.html")); info.Mode().Perm() != 0o644 {
		t.Errorf("a refused restore changed the mode of a file there to %04o", info.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(web, datadir.LockFileName)); !os.IsNotExist(err) {
		t.Errorf("a refused restore left a lock file: %v", err)
	}
	s := startChild(t, restored)
	for name, id := range before {
		got := post(t, http.MethodPost, s.url+"/login", jsonCT, `{"code":"`+mockCode(t, s.url, name)+`"}`)
		if d := dataOf[loginData](t, got); d.NewUser || d.UserID != id {
			t.Fatalf("after the restore, login of %s = %s; want user %d, new_user false", name, got.raw, id)
		}
		if giftsBefore[id] {
			token := dataOf[loginData](t, got).Token
			if again := post(t, http.MethodPost, s.url+"/claims/welcome-gift", "", "", "token", token); again.code != http.StatusConflict {
				t.Fatalf("after the restore, user %d's gift was given again: %s", id, again.raw)
			}
		}
	}
}

// wxlogin repair lists what it would drop and changes nothing; with
// -drop, it keeps the rest as a store that checks out, and puts the
// damaged files aside.
func TestRepairListsThenDrops(t *testing.T) {
	files, _ := damageFixture(t)
	// The line that created user 3, in the newest journal, changed on disk
	// (two bits, more than a repair corrects): the user is lost, and so is
	// the claim that names them; id 3 stays unused.
	damaged := maps.Clone(files)
	journal := bytes.Clone(files["users.journal.000003.jsonl"])
	at := bytes.Index(journal, []byte(`"o-3"`))
	journal[at+3] = '9'
	damaged["users.journal.000003.jsonl"] = journal
	dir := testkit.PutFiles(t, t.TempDir(), damaged)

	out, err := tool(t, "repair", "-data", dir)
	if err == nil || !strings.Contains(out, "users.journal.000003.jsonl:2: checksum mismatch") || !strings.Contains(out, `"o-9"`) ||
		!strings.Contains(out, `drops the claim "gift" of user 3: the user's record is lost`) || !strings.Contains(out, "keeps id 3 unused") {
		t.Errorf("repair without -drop = %v:\n%s\nwant the line it would drop, and nothing changed", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "users.journal.000003.jsonl")); !bytes.Equal(got, journal) {
		t.Error("repair without -drop changed the damaged file")
	}

	out, err = tool(t, "repair", "-data", dir, "-drop")
	if err != nil || !strings.Contains(out, "repaired") {
		t.Fatalf("repair -drop = %v:\n%s", err, out)
	}
	if out, err := tool(t, "check", "-data", dir); err != nil || !strings.Contains(out, "2 users (2 persons) and 1 claims, created in mock mode") {
		t.Errorf("check after the repair = %v:\n%s\nwant the two users and the claim no damage touched, in mock mode still", err, out)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "damaged-*", "users.journal.000003.jsonl"))
	if len(aside) != 1 {
		t.Errorf("the damaged journal was not kept aside: %v", aside)
	}
}

// stalledBackupServer is an admin address whose GET /backup answers 200
// and the first line of a backup, then sends nothing more until the test
// ends.
func stalledBackupServer(t *testing.T) string {
	t.Helper()
	stop := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, `{"format":"wxlogin-users-snapshot"`+"\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() {
		close(stop)
		ts.Close()
	})
	return ts.URL
}

// A server that sends its answer's headers and then stalls cannot hold
// wxlogin backup: it fails within its -timeout, saying so, and leaves no
// file behind, not even its temporary one.
func TestBackupOfAStalledAnswerFailsWithinItsTimeout(t *testing.T) {
	from := stalledBackupServer(t)
	dir := t.TempDir()
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := tool(t, "backup", "-from", from, "-to", filepath.Join(dir, "users.jsonl"), "-timeout", "1s")
		done <- result{out, err}
	}()
	var got result
	select {
	case got = <-done:
	case <-time.After(time.Minute):
		t.Fatal("wxlogin backup -timeout 1s still waits for a stalled answer after a minute")
	}
	if !errors.Is(got.err, context.DeadlineExceeded) || !strings.Contains(got.err.Error(), "within -timeout 1s") {
		t.Errorf("wxlogin backup of a stalled answer = %v:\n%s\nwant a deadline exceeded, naming -timeout", got.err, got.out)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("a backup that timed out left %s", entries[0].Name())
	}
}

// -timeout must be a positive duration, and an error says which flag.
func TestBackupTimeoutIsValidated(t *testing.T) {
	for _, tt := range []struct{ timeout, want string }{
		{"0", "wxlogin backup: -timeout: must be positive"},
		{"-5s", "wxlogin backup: -timeout: must be positive"},
		{"soon", `invalid value "soon" for flag -timeout`},
	} {
		t.Run(tt.timeout, func(t *testing.T) {
			out, err := tool(t, "backup", "-from", "http://127.0.0.1:1", "-to", filepath.Join(t.TempDir(), "users.jsonl"), "-timeout", tt.timeout)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("wxlogin backup -timeout %s = %v:\n%s\nwant %q", tt.timeout, err, out, tt.want)
			}
		})
	}
}

// A backup killed halfway leaves its temporary file, with every user's
// data, next to the backup; the next run into that directory removes it,
// and says so, but nothing else: not another program's hidden file, and
// not the temporary file of a backup running meanwhile.
func TestBackupRemovesWhatAKilledBackupLeft(t *testing.T) {
	dir := t.TempDir()
	killed := exec.Command(childBinary(), "backup", "-from", stalledBackupServer(t), "-to", filepath.Join(dir, "users-1.jsonl"))
	killed.Env = []string{"WXLOGIN_TEST_CHILD=1"}
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	left := func() []string {
		names, _ := filepath.Glob(filepath.Join(dir, tools.BackupTempPrefix+"users-1.jsonl.tmp*"))
		return names
	}
	testkit.WaitWithin(t, time.Minute, "the backup's temporary file", func() bool { return len(left()) == 1 })
	killed.Process.Kill()
	killed.Wait()
	leftover := left()[0]

	others := filepath.Join(dir, ".other-program.tmp1")
	testkit.WriteFile(t, others, "not wxlogin's")
	running := filepath.Join(dir, tools.BackupTempPrefix+"users-0.jsonl.tmp7")
	testkit.WriteFile(t, running, "a backup being written")
	f, err := os.Open(running)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	s := startServer(t, nil, "-data", t.TempDir(), "-admin-addr", "127.0.0.1:0")
	admin := regexp.MustCompile(`msg="admin listening" url=(http://[^/]+)/`).FindStringSubmatch(s.logs.String())
	if admin == nil {
		t.Fatalf("no admin address in the log:\n%s", s.logs.String())
	}
	out, err := tool(t, "backup", "-from", admin[1], "-to", filepath.Join(dir, "users-2.jsonl"))
	if err != nil {
		t.Fatalf("the next backup = %v:\n%s", err, out)
	}
	if want := "removed " + filepath.Base(leftover) + ", left by a backup that did not finish"; !strings.Contains(out, want) {
		t.Errorf("the next backup said:\n%s\nwant %q", out, want)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the killed backup's temporary file is still there (stat: %v)", err)
	}
	for _, kept := range []string{others, running, filepath.Join(dir, "users-2.jsonl")} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s is gone after the next backup: %v", filepath.Base(kept), err)
		}
	}
}

// wxlogin check says that the newest journal was cut, and how many lines
// are missing, and fails (the journal's own tests cut it at every line,
// TestANewestJournalCutAtALineBoundaryIsRefused).
func TestCheckCountsTheLinesACutTook(t *testing.T) {
	files, _ := damageFixture(t)
	const name = "users.journal.000003.jsonl"
	journal := files[name]
	lines := bytes.Count(journal, []byte("\n")) - 1 // after the header
	damaged := maps.Clone(files)
	damaged[name], _, _ = bytes.Cut(journal, []byte("\n"))
	damaged[name] = append(damaged[name], '\n') // only its header
	out, err := tool(t, "check", "-data", testkit.PutFiles(t, t.TempDir(), damaged))
	if err == nil || !strings.Contains(out, fmt.Sprintf("%s: cut short", name)) || !strings.Contains(out, fmt.Sprintf("%d lines are missing", lines)) {
		t.Errorf("wxlogin check of the journal cut to its header = %v:\n%s\nwant it to fail, counting the lines missing", err, out)
	}
}

// A restore keeps the ids past the backup's unused, as erased ids, 1 000
// by default, and as many events' seqs: the server backed up may have
// given them after the backup, to users that other services, webhooks
// received and JWTs still name. The next new user's id and the next
// event's seq are past them; -keep-unused 0 keeps none, for a backup of a
// server that stopped with it.
func TestARestoreKeepsTheIDsAfterTheBackupUnused(t *testing.T) {
	meta := account.Meta{Mode: account.ModeMock, AppIDs: []string{config.MockAppID}}
	for _, tt := range []struct {
		args      []string
		noEvents  bool  // the backup holds no event: the server may have recorded its first since
		next, seq int64 // the next new user's id, and the seq of its user.created
	}{
		{nil, false, 1004, 1004},
		{[]string{"-keep-unused", "10"}, false, 14, 14},
		{[]string{"-keep-unused", "0"}, false, 4, 4},
		{nil, true, 1004, 1001},
	} {
		t.Run(fmt.Sprint(tt.args, tt.noEvents), func(t *testing.T) {
			s, err := users.Open(t.TempDir(), meta, time.Now, discardLogger(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.noEvents {
				s.RecordNoEvents()
			} else {
				s.RecordEvents(false)
			}
			for _, name := range []string{"alice", "bob", "carol"} {
				if _, _, err := s.Login(config.MockAppID, "o-"+name, ""); err != nil {
					t.Fatal(err)
				}
			}
			backup := filepath.Join(t.TempDir(), "backup")
			var b bytes.Buffer
			if err := s.WriteBackup(&b); err != nil {
				t.Fatal(err)
			}
			s.Close()
			testkit.WriteFile(t, backup, b.String())
			restored := filepath.Join(t.TempDir(), "restored")
			if out, err := tool(t, append([]string{"restore", "-from", backup, "-data", restored}, tt.args...)...); err != nil {
				t.Fatalf("restore = %v:\n%s", err, out)
			}
			r, err := users.Open(restored, meta, time.Now, discardLogger(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			r.RecordEvents(false)
			u, created, err := r.Login(config.MockAppID, "o-dave", "")
			if err != nil || !created || u.ID != tt.next {
				t.Errorf("after the restore a new user is %d (created %v, %v); want %d", u.ID, created, err, tt.next)
			}
			if list := r.Events(0, 100); len(list) == 0 || list[len(list)-1].Seq != tt.seq {
				t.Errorf("after the restore the new user's event is %v; want the seq %d", summariesOf(list), tt.seq)
			}
		})
	}
	for _, n := range []string{"-1", "10000000001"} {
		if out, err := tool(t, "restore", "-from", "x", "-keep-unused", n, "-data", t.TempDir()); err == nil || !strings.Contains(err.Error(), "-keep-unused") {
			t.Errorf("restore -keep-unused %s = %v:\n%s; want it refused, naming the flag", n, err, out)
		}
	}
}

// summariesOf is each event's seq and type.
func summariesOf(list []events.Event) []string {
	var out []string
	for _, e := range list {
		out = append(out, fmt.Sprint(e.Seq, " ", e.Type))
	}
	return out
}
