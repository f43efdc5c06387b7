package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"wxlogin/internal/strictjson"
	"wxlogin/internal/testkit"
)

// The journal is tested here with an owner of its own, a map of notes:
// it knows lines, not users. The user store's tests (store_test.go,
// journal_test.go at the root) test it as the user store uses it.

// noteOwner is an owner of a journal: a map of notes, one line per note
// set, the last line of a note winning.
type noteOwner struct {
	mu    sync.Mutex // guards notes and the order of appends
	notes map[string]string
	hold  chan struct{} // if set, a snapshot waits for it before its first line
}

type noteLine struct{ Key, Value string }

func (o *noteOwner) snapshot() iter.Seq[[]byte] {
	o.mu.Lock()
	lines := make([][]byte, 0, len(o.notes))
	for _, k := range slices.Sorted(maps.Keys(o.notes)) {
		line, _ := json.Marshal(noteLine{k, o.notes[k]})
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

// load opens the notes journal in dir, as a start-up does.
func (o *noteOwner) load(dir string) (*Journal, error) {
	j, err := Open(dir, "notes", Options{Snapshot: o.snapshot, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	o.notes = map[string]string{}
	parse := func(line []byte) (noteLine, error) {
		var n noteLine
		return n, strictjson.Decode(line, &n)
	}
	apply := func(n noteLine) error { o.notes[n.Key] = n.Value; return nil }
	if err := Replay(j, parse, apply); err != nil {
		return nil, errors.Join(err, j.Close())
	}
	return j, nil
}

func (o *noteOwner) open(t *testing.T, dir string) *Journal {
	t.Helper()
	j, err := o.load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func (o *noteOwner) set(t *testing.T, j *Journal, key, value string) {
	t.Helper()
	if err := o.trySet(j, key, value); err != nil {
		t.Fatal(err)
	}
}

func (o *noteOwner) trySet(j *Journal, key, value string) error {
	o.mu.Lock()
	o.notes[key] = value
	line, _ := json.Marshal(noteLine{key, value})
	b := j.Append(append(line, '\n'))
	o.mu.Unlock()
	return j.Wait(b)
}

// text is the notes, a line each, in order: two owners hold the same
// exactly when their texts are equal.
func (o *noteOwner) text() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(o.notes)) {
		fmt.Fprintf(&b, "%s=%s\n", k, o.notes[k])
	}
	return b.String()
}

func TestJournalKeepsAnyOwnersLines(t *testing.T) {
	dir := t.TempDir()
	o := &noteOwner{}
	j := o.open(t, dir)
	want := map[string]string{}
	for i := range 30 {
		if i%10 == 5 {
			j.CompactOnNextWrite()
		}
		key, value := fmt.Sprint("note-", i%7), fmt.Sprint("value-", i)
		o.set(t, j, key, value)
		want[key] = value
	}
	j.CompactOnNextWrite() // waits for the last snapshot
	if err := j.Close(); err != nil {
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

// A line is durable when wait returns, also when its flush started a
// snapshot that is still being written: a start-up from the files as they
// are then (as after a kill -9) has it.
func TestJournalLineIsDurableWhileASnapshotIsWritten(t *testing.T) {
	dir := t.TempDir()
	o := &noteOwner{hold: make(chan struct{})}
	j := o.open(t, dir)
	o.set(t, j, "before", "1")
	j.CompactOnNextWrite()
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

// noteFixture writes a small store of notes to dir with one file of each
// kind a store keeps: a snapshot, a journal sealed when writes moved on
// (its snapshot failed, so it stayed), the newest journal, and the
// watermark. It returns the files and what they hold.
func noteFixture(t *testing.T, dir string) (files map[string][]byte, want string) {
	t.Helper()
	o := &noteOwner{}
	j, err := o.load(dir)
	if err != nil {
		t.Fatal(err)
	}
	o.set(t, j, "alice", "1")
	o.set(t, j, "alice's gift", "taken")
	j.CompactOnNextWrite()
	o.set(t, j, "bob", "2") // rotates to journal 2 and writes the snapshot through 1
	j.CompactOnNextWrite()
	j.InjectFault(func(step string) error {
		if step == "snapshot" {
			return fmt.Errorf("%s: %w", step, syscall.ENOSPC)
		}
		return nil
	})
	o.set(t, j, "carol", "3") // seals journal 2, moves to 3; the snapshot fails
	o.set(t, j, "alice", "爱丽丝")
	o.set(t, j, "carol's gift", "taken")
	j.WaitCompactions()
	want = o.text()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	files = map[string][]byte{}
	for _, name := range []string{"notes.snapshot.jsonl", "notes.journal.000002.jsonl", "notes.journal.000003.jsonl", "notes.watermark"} {
		if files[name], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != len(files) {
		t.Fatalf("the fixture holds %v; want %d files", names, len(files))
	}
	return files, want
}

// openNotes writes files to dir, in place of what it held, and opens the
// notes there as a start-up would, returning what they hold.
func openNotes(t *testing.T, dir string, files map[string][]byte) (string, error) {
	t.Helper()
	testkit.PutFiles(t, dir, files)
	o := &noteOwner{}
	j, err := o.load(dir)
	if err != nil {
		return "", err
	}
	defer j.Close()
	return o.text(), nil
}

// A snapshot cut at any line boundary, and any journal or the snapshot
// deleted, is refused, naming the file.
func TestCutOrMissingFilesAreRefused(t *testing.T) {
	files, _ := noteFixture(t, t.TempDir())
	scratch := t.TempDir()
	snapshot := files["notes.snapshot.jsonl"]
	for at := 0; at < len(snapshot); at++ {
		if at > 0 && snapshot[at-1] != '\n' {
			continue
		}
		damaged := maps.Clone(files)
		damaged["notes.snapshot.jsonl"] = snapshot[:at]
		if _, err := openNotes(t, scratch, damaged); err == nil || !strings.Contains(err.Error(), "notes.snapshot.jsonl") {
			t.Errorf("the snapshot cut after byte %d: %v; want it refused, naming it", at, err)
		}
	}
	for name := range files {
		damaged := maps.Clone(files)
		delete(damaged, name)
		if _, err := openNotes(t, scratch, damaged); err == nil {
			t.Errorf("with %s deleted the store opened; want it refused", name)
		} else if !strings.Contains(err.Error(), "notes.") {
			t.Errorf("with %s deleted: %v; want an error naming the files", name, err)
		}
	}
}

// A disk that fills up or fails at any step of a rotation leaves a store
// that opens with every acknowledged line, and a rotation that failed is
// tried again later. Each step fails once: writing half of what it writes,
// as a full disk does, or nothing.
func TestRotationSurvivesAFaultAtEachStep(t *testing.T) {
	steps := []struct {
		step   string
		sticky bool // the write that rotates fails, and every later one
	}{
		{"create", false}, {"header", false}, {"rename", false}, {"sync dir", false},
		{"seal", true}, {"mark", true}, {"snapshot", false},
	}
	for _, tt := range steps {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO} {
			t.Run(tt.step+"/"+errno.Error(), func(t *testing.T) {
				dir := t.TempDir()
				o := &noteOwner{}
				j, err := o.load(dir)
				if err != nil {
					t.Fatal(err)
				}
				acked := map[string]string{} // every note whose line was acknowledged
				set := func(key string) error {
					err := o.trySet(j, key, "v")
					if err == nil {
						acked[key] = "v"
					}
					return err
				}
				for i := range 5 {
					if err := set(fmt.Sprint("before-", i)); err != nil {
						t.Fatal(err)
					}
				}
				var failed bool // the snapshot step runs on a goroutine of its own, which the flush starts
				var failedMu sync.Mutex
				j.InjectFault(func(step string) error {
					failedMu.Lock()
					defer failedMu.Unlock()
					if step != tt.step || failed {
						return nil
					}
					failed = true
					return fmt.Errorf("%s: %w", step, errno)
				})
				j.CompactOnNextWrite()
				err = set("rotating")
				if gotSticky := err != nil; gotSticky != tt.sticky {
					t.Fatalf("the write that rotates: %v; want a failure %v", err, tt.sticky)
				}
				j.WaitCompactions()
				if failedMu.Lock(); !failed {
					t.Fatalf("the rotation never reached step %s", tt.step)
				}
				failedMu.Unlock()
				if !tt.sticky {
					// The rotation is tried again, and now goes through.
					j.CompactOnNextWrite()
					if err := set("after"); err != nil {
						t.Fatal(err)
					}
					j.WaitCompactions()
					if _, err := os.Stat(filepath.Join(dir, "notes.snapshot.jsonl")); err != nil {
						t.Errorf("no snapshot after the rotation was tried again: %v", err)
					}
				} else if err := set("after"); err == nil {
					t.Error("a write after a failed seal succeeded; it cannot be trusted to be durable")
				} else if !errors.Is(err, ErrWriteFailed) {
					t.Errorf("a write after a failed seal = %v; want ErrWriteFailed", err)
				}
				j.Close()

				// Started again, as after the operator freed the disk: every
				// acknowledged line is there, and the store takes writes.
				reopened := &noteOwner{}
				rj := reopened.open(t, dir)
				for key := range acked {
					if _, ok := reopened.notes[key]; !ok {
						t.Errorf("after a restart the acknowledged note %s is missing", key)
					}
				}
				if n := len(reopened.notes); n != len(acked) {
					t.Errorf("after a restart the store holds %d notes; want the %d acknowledged", n, len(acked))
				}
				rj.CompactOnNextWrite()
				if err := reopened.trySet(rj, "later", "v"); err != nil {
					t.Errorf("a write after the restart: %v", err)
				}
			})
		}
	}
}

// A write that fails makes every later one fail, as the same error: after
// a failed fsync the kernel may have dropped the data.
func TestAWriteFailureIsSticky(t *testing.T) {
	o := &noteOwner{}
	j := o.open(t, t.TempDir())
	j.InjectFault(func(step string) error {
		if step == "write" {
			return syscall.EIO
		}
		return nil
	})
	if err := o.trySet(j, "a", "1"); !errors.Is(err, ErrWriteFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("a write that failed = %v; want ErrWriteFailed wrapping EIO", err)
	}
	j.InjectFault(nil)
	if err := o.trySet(j, "b", "2"); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("a write after a failed one = %v; want ErrWriteFailed: it cannot be trusted to be durable", err)
	}
	if err := j.WriteFailure(); !errors.Is(err, syscall.EIO) {
		t.Errorf("WriteFailure = %v; want the first failure", err)
	}
}

// Settle makes every line appended before it durable, writing only when
// one is pending: with none, it writes and fsyncs nothing. After a failed
// write it fails, as every write does.
func TestSettleWritesOnlyWhatIsPending(t *testing.T) {
	dir := t.TempDir()
	o := &noteOwner{}
	j := o.open(t, dir)
	var writes atomic.Int32
	j.InjectFault(func(step string) error {
		if step == "write" {
			writes.Add(1)
		}
		return nil
	})
	if err := j.Settle(); err != nil || writes.Load() != 0 {
		t.Fatalf("Settle with nothing appended = %v after %d writes; want nil after none", err, writes.Load())
	}
	line, _ := json.Marshal(noteLine{"a", "1"})
	j.Append(append(line, '\n'))
	if err := j.Settle(); err != nil || writes.Load() != 1 {
		t.Fatalf("Settle with a line pending = %v after %d writes; want nil after one", err, writes.Load())
	}
	if err := j.Settle(); err != nil || writes.Load() != 1 {
		t.Fatalf("Settle again = %v after %d writes; want nil, and no more writes", err, writes.Load())
	}
	copied := t.TempDir() // the files as a kill -9 now would leave them
	for _, name := range []string{"notes.journal.000001.jsonl", "notes.watermark"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(copied, name), b, 0o600)
	}
	reopened := &noteOwner{}
	reopened.open(t, copied)
	if reopened.notes["a"] != "1" {
		t.Errorf("after Settle the files hold %v; want the line appended before it", reopened.notes)
	}
	j.InjectFault(func(step string) error {
		if step == "write" {
			return syscall.EIO
		}
		return nil
	})
	j.Append(append(line, '\n'))
	if err := j.Settle(); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("Settle of a line whose write fails = %v; want ErrWriteFailed", err)
	}
	if err := j.Settle(); !errors.Is(err, ErrWriteFailed) {
		t.Errorf("Settle with nothing pending after a failed write = %v; want ErrWriteFailed", err)
	}
}

// Files of another store are refused, even with the right names and
// generations; and a new journal with nothing but its header is dropped
// only when the rotation that made it was cut short, before the seal.
func TestJournalFilesBelongTogether(t *testing.T) {
	files, want := noteFixture(t, t.TempDir())
	other, _ := noteFixture(t, t.TempDir()) // the same content, another store
	scratch := t.TempDir()

	h := headerOf(t, files["notes.journal.000003.jsonl"])
	mixed := maps.Clone(files)
	mixed["notes.journal.000003.jsonl"] = other["notes.journal.000003.jsonl"]
	if headerOf(t, other["notes.journal.000003.jsonl"]).Store == h.Store {
		t.Fatal("two stores have one id")
	}
	if _, err := openNotes(t, scratch, mixed); err == nil || !strings.Contains(err.Error(), "notes.journal.000003.jsonl:1: a file of another store") {
		t.Errorf("a journal of another store: %v; want it refused", err)
	}

	// Journal 3 sealed, and journal 4 with only its header: the rotation
	// got past the seal, so journal 4 is the newest, and stays.
	sealed := maps.Clone(files)
	j := &Journal{name: "notes", opts: Options{Meta: h.Meta}, store: h.Store}
	var tally lineTally // where journal 3 stands: its lines, and its last checksum
	for i, line := range strings.SplitAfter(string(files["notes.journal.000003.jsonl"]), "\n") {
		if _, _, sum, err := splitFramed([]byte(line)); err == nil {
			tally.last = sum
			if i > 0 {
				tally.lines++
			}
		}
	}
	sealed["notes.journal.000003.jsonl"] = append(bytes.Clone(files["notes.journal.000003.jsonl"]), encodeTrailer(tally)...)
	sealed["notes.journal.000004.jsonl"], _ = encodeHeader(j.header(4))
	got, err := openNotes(t, scratch, sealed)
	if err != nil || got != want {
		t.Errorf("journal 3 sealed and journal 4 empty: %v; want the store as it was", err)
	}
	if _, err := os.Stat(filepath.Join(scratch, "notes.journal.000004.jsonl")); err != nil {
		t.Errorf("journal 4, which the seal of 3 calls for, was removed: %v", err)
	}

	// Without the seal, journal 4 is a rotation cut short: it is removed.
	cut := maps.Clone(sealed)
	cut["notes.journal.000003.jsonl"] = files["notes.journal.000003.jsonl"]
	if got, err := openNotes(t, scratch, cut); err != nil || got != want {
		t.Errorf("journal 3 unsealed and journal 4 empty: %v; want the store as it was", err)
	}
	if _, err := os.Stat(filepath.Join(scratch, "notes.journal.000004.jsonl")); !os.IsNotExist(err) {
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
	files, _ := noteFixture(t, t.TempDir())
	only := map[string][]byte{"notes.journal.000001.jsonl": nil}
	dir := t.TempDir()
	o := &noteOwner{}
	j := o.open(t, dir)
	for _, name := range []string{"a", "b", "c"} {
		o.set(t, j, name, "1")
	}
	j.Close()
	journal, _ := os.ReadFile(filepath.Join(dir, "notes.journal.000001.jsonl"))
	for name, cut := range map[string]map[string][]byte{
		"the only journal cut to 10 bytes": {"notes.journal.000001.jsonl": journal[:10]},
		"the only journal cut to 1 byte":   {"notes.journal.000001.jsonl": journal[:1]},
		"the only journal emptied":         only,
		"the newest journal cut to 5 bytes": func() map[string][]byte {
			f := maps.Clone(files)
			f["notes.journal.000003.jsonl"] = f["notes.journal.000003.jsonl"][:5]
			return f
		}(),
	} {
		if got, err := openNotes(t, t.TempDir(), cut); err == nil {
			t.Errorf("%s: the store opened, holding %q; want it refused", name, got)
		}
	}
}

// A snapshot of another store put among a store's journals is refused
// before anything is removed: the journals it would take as included in
// it are left for the operator.
func TestAForeignSnapshotRemovesNothing(t *testing.T) {
	files, _ := noteFixture(t, t.TempDir())
	other, _ := noteFixture(t, t.TempDir())
	mixed := maps.Clone(files)
	mixed["notes.snapshot.jsonl"] = other["notes.snapshot.jsonl"] // through 1, of another store
	mixed["notes.journal.000001.jsonl"] = []byte("a journal the snapshot would include\n")
	dir := t.TempDir()
	if _, err := openNotes(t, dir, mixed); err == nil || !strings.Contains(err.Error(), "a file of another store") {
		t.Fatalf("a snapshot of another store: %v; want it refused", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.journal.000001.jsonl")); err != nil {
		t.Errorf("a journal was removed before the store was refused: %v", err)
	}
}

// The newest journal cut at any line boundary short of what was
// acknowledged is refused, naming it and the lines missing: the watermark
// records where it stood. Cut at its very end it is whole, and opens.
func TestANewestJournalCutAtALineBoundaryIsRefused(t *testing.T) {
	files, want := noteFixture(t, t.TempDir())
	scratch := t.TempDir()
	const name = "notes.journal.000003.jsonl"
	journal := files[name]
	lines := bytes.Count(journal, []byte("\n")) - 1 // after the header
	kept := 0
	for at := 0; at <= len(journal); at++ {
		if at == 0 || journal[at-1] != '\n' {
			continue
		}
		damaged := maps.Clone(files)
		damaged[name] = journal[:at]
		got, err := openNotes(t, scratch, damaged)
		if at == len(journal) {
			if err != nil || got != want {
				t.Errorf("the whole journal: %v; want the store as it was", err)
			}
			continue
		}
		missing := lines - kept
		wantErr := fmt.Sprintf("%s: cut short: the watermark (notes.watermark) records %d acknowledged lines in it, and it holds %d: %d lines are missing",
			filepath.Join(scratch, name), lines, kept, missing)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("the newest journal cut to %d of its %d lines: %v; want %q", kept, lines, err, wantErr)
		}
		kept++
	}
}

// The watermark is part of the store: missing, damaged, of another store
// or of another time, it is refused; only the states a crash leaves pass.
func TestTheWatermarkBelongsToItsStore(t *testing.T) {
	files, want := noteFixture(t, t.TempDir())
	other, _ := noteFixture(t, t.TempDir())
	scratch := t.TempDir()
	h := headerOf(t, files["notes.journal.000003.jsonl"])
	mark := func(gen, lines int64, last uint32) []byte {
		return appendMark(nil, markFor(h.Store, gen, lineTally{lines: lines, last: last}))
	}
	refused := map[string]struct {
		mark    []byte // nil: none
		wantErr string
	}{
		"missing":          {nil, "notes.watermark: missing"},
		"of another store": {other["notes.watermark"], "notes.watermark:1: a file of another store"},
		"of journal 2, which is sealed and followed by lines":                  {mark(2, 1, 0), "records journal 2, and the journals run from 2 to 3"},
		"of journal 5, with lines":                                             {mark(5, 1, 0), "records journal 5"},
		"of journal 4, with no lines, after a journal 3 of the current format": {mark(4, 0, 0), "records journal 4"},
		"naming another line":                                                  {mark(3, 2, 0xdeadbeef), "notes.journal.000003.jsonl:3: not the line the watermark (notes.watermark) records there"},
		"cut short":                                                            {files["notes.watermark"][:markSize-1], fmt.Sprintf("notes.watermark:1: %d bytes", markSize-1)},
		"longer than a watermark":                                              {append(bytes.Clone(files["notes.watermark"]), '\n'), fmt.Sprintf("notes.watermark:1: %d bytes", markSize+1)},
		"a trailer in its place":                                               {encodeTrailer(lineTally{}), "notes.watermark:1:"},
		"records a negative count":                                             {appendMark(nil, fileMark{Store: h.Store, Generation: 3, Lines: -1, CRC32C: "00000000"}), "out of range"},
	}
	for name, tt := range refused {
		damaged := maps.Clone(files)
		damaged["notes.watermark"] = tt.mark
		if tt.mark == nil {
			delete(damaged, "notes.watermark")
		}
		if _, err := openNotes(t, scratch, damaged); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("a watermark %s: %v; want it refused with %q", name, err, tt.wantErr)
		}
	}

	// An older watermark of the same journal vouches for less, and passes:
	// it is what a power cut before its last write leaves.
	older := maps.Clone(files)
	older["notes.watermark"] = mark(3, 0, h.sum(t, files["notes.journal.000003.jsonl"]))
	if got, err := openNotes(t, scratch, older); err != nil || got != want {
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
	files, want := noteFixture(t, t.TempDir())
	v2 := map[string][]byte{}
	for name, data := range files {
		if name != "notes.watermark" {
			v2[name] = reframed(t, data, 2)
		}
	}
	for _, crash := range []string{"", "mark", "create", "seal"} {
		t.Run("crash at "+crash, func(t *testing.T) {
			dir := t.TempDir()
			testkit.PutFiles(t, dir, v2)
			if crash != "" {
				// Opened by a wxlogin killed at that step: the move was cut short.
				j, err := Open(dir, "notes", Options{Log: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				j.InjectFault(func(step string) error {
					if step == crash || (crash == "create" && step == "header") {
						return errors.New("killed")
					}
					return nil
				})
				parse := func([]byte) (struct{}, error) { return struct{}{}, nil }
				if err := Replay(j, parse, func(struct{}) error { return nil }); err == nil {
					t.Fatalf("the move did not reach step %s", crash)
				}
				j.Close()
			}
			o := &noteOwner{}
			j := o.open(t, dir)
			if got := o.text(); got != want {
				t.Fatalf("the store of version 2 opens holding\n%s\nwant\n%s", got, want)
			}
			o.set(t, j, "new", "1")
			j.Close()
			sealed, _ := os.ReadFile(filepath.Join(dir, "notes.journal.000003.jsonl"))
			if headerOf(t, sealed).Version != 2 || !bytes.HasPrefix(sealed[bytes.LastIndexByte(sealed[:len(sealed)-1], '\n')+1:], []byte("t ")) {
				t.Errorf("journal 3 of version 2 is\n%s\nwant it sealed, of version 2 still", sealed)
			}
			newest, _ := os.ReadFile(filepath.Join(dir, "notes.journal.000004.jsonl"))
			if headerOf(t, newest).Version != formatVersion || !bytes.Contains(newest, []byte(`"new"`)) {
				t.Errorf("the write went to\n%s\nwant journal 4, of version %d", newest, formatVersion)
			}
			reopened := &noteOwner{}
			reopened.open(t, dir)
			if len(reopened.notes) != len(o.notes) {
				t.Errorf("reopened: %d notes; want %d", len(reopened.notes), len(o.notes))
			}
			os.Remove(filepath.Join(dir, "notes.watermark"))
			if j, err := (&noteOwner{}).load(dir); err == nil {
				j.Close()
				t.Error("with journal 4 of the current format, the store opened without its watermark")
			}
		})
	}
}

// Every journal is written with O_APPEND: a write lands at the end of the
// file whatever else wrote to it, never over another's lines.
func TestJournalsAreWrittenAppendOnly(t *testing.T) {
	dir := t.TempDir()
	o := &noteOwner{}
	j := o.open(t, dir)
	for i := range 2 {
		o.set(t, j, fmt.Sprint("note-", i), "v")
		appendOnly(t, j.file)
		j.CompactOnNextWrite() // the second write goes to a journal a rotation made
	}
	j.Close()
	appendOnly(t, (&noteOwner{}).open(t, dir).file) // one reopened
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

// A last line cut short that the watermark says was acknowledged is not a
// crash's debris: start-up refuses the store, saying how many lines are
// missing, and leaves the line's bytes on disk for the operator.
func TestAnAcknowledgedLineCutShortIsNotDropped(t *testing.T) {
	files, _ := noteFixture(t, t.TempDir())
	const name = "notes.journal.000003.jsonl"
	damaged := maps.Clone(files)
	damaged[name] = files[name][:len(files[name])-5] // into its last line
	dir := t.TempDir()
	if _, err := openNotes(t, dir, damaged); err == nil || !strings.Contains(err.Error(), "1 lines are missing") {
		t.Errorf("the newest journal cut into its last acknowledged line: %v; want it refused, one line missing", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, damaged[name]) {
		t.Errorf("start-up changed the journal it refused: %d bytes, where it held %d", len(got), len(damaged[name]))
	}
}

// A rotation that went through (journal 3 sealed, journal 4 begun, the
// watermark moved on to it) with journal 3's seal damaged since is damage
// in journal 3, reported as such; journal 4 is not taken for a rotation
// cut short and removed.
func TestADamagedSealIsNotTakenForARotationCutShort(t *testing.T) {
	files, _ := noteFixture(t, t.TempDir())
	h := headerOf(t, files["notes.journal.000003.jsonl"])
	j := &Journal{name: "notes", opts: Options{Meta: h.Meta}, store: h.Store}
	var tally lineTally
	for i, line := range strings.SplitAfter(string(files["notes.journal.000003.jsonl"]), "\n") {
		if _, _, sum, err := splitFramed([]byte(line)); err == nil {
			tally.last = sum
			if i > 0 {
				tally.lines++
			}
		}
	}
	trailer := encodeTrailer(tally)
	trailer[len(trailer)/2] ^= 0x01 // the seal damaged
	rotated := maps.Clone(files)
	rotated["notes.journal.000003.jsonl"] = append(bytes.Clone(files["notes.journal.000003.jsonl"]), trailer...)
	header, headerTally := encodeHeader(j.header(4))
	rotated["notes.journal.000004.jsonl"] = header
	rotated["notes.watermark"] = appendMark(nil, markFor(h.Store, 4, headerTally))
	dir := t.TempDir()
	if _, err := openNotes(t, dir, rotated); err == nil || !strings.Contains(err.Error(), "notes.journal.000003.jsonl:") {
		t.Errorf("journal 3's seal damaged after the rotation: %v; want it refused, naming journal 3", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.journal.000004.jsonl")); err != nil {
		t.Errorf("journal 4, which the watermark names, was removed: %v", err)
	}
}

// A watermark is written at its one length or not at all: a store id too
// long to fit would make a watermark the next start refuses.
func TestAWatermarkThatWouldNotFitIsNotWritten(t *testing.T) {
	dir := t.TempDir()
	j := &Journal{dir: dir, name: "notes"}
	if err := j.writeMark(fileMark{Store: strings.Repeat("a", markSize), Generation: 1, CRC32C: "00000000"}, true); err == nil {
		t.Error("a watermark holding a store id of 160 bytes was written")
	}
	if _, err := os.Stat(j.markPath()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after the refusal, the watermark file: %v; want none", err)
	}
	if err := j.writeMark(fileMark{Store: "0123456789abcdef", Generation: 1, CRC32C: "00000000"}, true); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(j.markPath()); len(data) != markSize {
		t.Errorf("the watermark is %d bytes; want %d", len(data), markSize)
	}
	j.markFile.Close()
}
