package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// This file is the journal: a durable log of lines, which the user store
// keeps its records in. It knows lines, not what they mean. Its owner
// writes each change as one line, and at start-up gets every line back, in
// order, to rebuild its state from.
//
// The journal keeps two kinds of file in its directory, named for its owner
// (here "users"), each starting with a header line that names its format:
//
//   - users.journal.<generation>.jsonl: lines are appended to the newest
//     generation. A line is durable once wait returns for its batch: each
//     flush writes and fsyncs every line appended since the previous one,
//     so owners that arrive while a flush is under way share the next
//     one (group commit).
//   - users.snapshot.jsonl: the owner's whole state as lines, written
//     atomically (temp file, fsync, rename, fsync of the directory) when the
//     journals have grown as large as the last snapshot. Its header names
//     the newest generation it includes; older journals are then deleted.
//
// Replay reads the snapshot, then the newer journals. A snapshot holds
// every line of the generations it replaces, and may hold the effect of
// lines that are also in the journal after it; so the owner's lines must be
// replayable twice, the last line about a thing winning. A crash can only
// cut the end of the newest journal, a batch that was never acknowledged:
// replay truncates a partial last line there and logs it, and reports any
// other damage as an error naming the file and line.

// Sizes of the journal: a snapshot is not written for less than
// minCompactBytes of journal, and no line may be longer than maxLineBytes.
const (
	minCompactBytes = 8 << 20
	maxLineBytes    = 256 << 10
)

// fileHeader is the first line of every journal and snapshot.
type fileHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Generation is a journal's own number, or for a snapshot the newest
	// journal generation whose lines it includes.
	Generation int64 `json:"generation"`
}

// errJournalClosed is what writes get after close.
var errJournalClosed = errors.New("the store is closed")

// batch is a group of lines written with one fsync.
type batch struct {
	buf  []byte
	done bool  // set, with err, by the flush that wrote buf
	err  error // guarded by journal.flushMu, like done
}

// journal is the durable log of one owner's lines in dir.
type journal struct {
	dir  string
	name string // the owner's, in every file name: "users"
	log  *slog.Logger
	// snapshot is the owner's state as lines, for a snapshot file. It must
	// copy the state when it is called, a state that includes every line
	// appended before the call; the lines are written out later, while
	// appends go on.
	snapshot func() iter.Seq[[]byte]

	mu      sync.Mutex // guards pending and failed
	pending *batch     // lines appended since the last flush began
	// failed is set when a write fails. After a failed fsync the kernel may
	// have dropped the dirty pages, so no later write can be trusted to be
	// durable: every write fails until the process is restarted.
	failed error

	flushMu     sync.Mutex // held by the one goroutine writing a batch; guards the fields below
	file        *os.File   // the newest generation; nil before replay and after close
	gen         int64
	size        int64 // bytes in generations newer than the snapshot
	compactAt   int64 // size at which to write a new snapshot
	compacting  bool
	compactions sync.WaitGroup // the background snapshot writer, waited for by close

	// What openJournal found, for replayJournal.
	haveSnapshot bool
	gens         []int64 // the journal generations on disk, ascending
	storedBytes  int64
}

// openJournal finds the files of name's journal in dir, creating dir if
// needed and removing a snapshot whose writer died before renaming it. The
// journal takes appends once replayJournal has read it back.
func openJournal(dir, name string, snapshot func() iter.Seq[[]byte], log *slog.Logger) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	j := &journal{
		dir: dir, name: name, log: log, snapshot: snapshot,
		pending: &batch{}, compactAt: minCompactBytes,
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		isJournal := strings.HasPrefix(name, j.journalPrefix()) && strings.HasSuffix(name, ".jsonl")
		if info, err := e.Info(); err == nil && (name == j.snapshotName() || isJournal) {
			j.storedBytes += info.Size()
		}
		switch {
		case name == j.snapshotName():
			j.haveSnapshot = true
		case strings.HasPrefix(name, "."+j.snapshotName()+".tmp"):
			// A snapshot whose writer died before the rename; it was never in use.
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
		case isJournal:
			gen, err := j.generationOf(name)
			if err != nil || gen < 1 || filepath.Base(j.journalPath(gen)) != name {
				return nil, fmt.Errorf("%s: not a wxlogin journal name", filepath.Join(dir, name))
			}
			j.gens = append(j.gens, gen)
		}
	}
	slices.Sort(j.gens)
	return j, nil
}

// The names and formats of the journal's files.
func (j *journal) snapshotName() string   { return j.name + ".snapshot.jsonl" }
func (j *journal) journalPrefix() string  { return j.name + ".journal." }
func (j *journal) snapshotFormat() string { return "wxlogin-" + j.name + "-snapshot" }
func (j *journal) journalFormat() string  { return "wxlogin-" + j.name + "-journal" }

func (j *journal) journalPath(gen int64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%s%06d.jsonl", j.journalPrefix(), gen))
}

// generationOf reads the generation from a journal's file name.
func (j *journal) generationOf(path string) (int64, error) {
	gen := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), j.journalPrefix()), ".jsonl")
	return strconv.ParseInt(gen, 10, 64)
}

// replayJournal hands every stored line of j to its owner, in order: parse
// reads a line (and must not keep it), apply puts it in the owner's state.
// Then j takes appends, to the newest generation.
//
// Parsing runs in a goroutine of its own, ahead of the applying, which must
// go in order (BENCHMARKS.md, start-up).
func replayJournal[R any](j *journal, parse func(line []byte) (R, error), apply func(R) error) error {
	through := int64(0)
	if j.haveSnapshot {
		h, size, err := replayFile(j, filepath.Join(j.dir, j.snapshotName()), j.snapshotFormat(), false, parse, apply)
		if err != nil {
			return err
		}
		through = h.Generation
		j.compactAt = max(minCompactBytes, size)
	}
	for i, gen := range j.gens {
		path := j.journalPath(gen)
		if gen <= through {
			// Already in the snapshot; a crash came between its rename and this removal.
			if err := os.Remove(path); err != nil {
				return err
			}
			continue
		}
		h, size, err := replayFile(j, path, j.journalFormat(), i == len(j.gens)-1, parse, apply)
		if err != nil {
			return err
		}
		if h.Generation != gen {
			return fmt.Errorf("%s:1: header says generation %d", path, h.Generation)
		}
		j.size += size
		j.gen = gen
	}
	var err error
	if j.gen == 0 {
		j.gen = through + 1
		j.file, err = j.createJournal(j.gen)
	} else {
		j.file, err = os.OpenFile(j.journalPath(j.gen), os.O_WRONLY|os.O_APPEND, 0)
	}
	return err
}

// replayFile applies the lines of one file and returns its header and
// size. With tornTailOK (the newest journal), a last line without its
// newline is a write cut off by a crash, never acknowledged: it is cut off
// the file and logged. Anywhere else an incomplete line is damage, reported
// as an error.
func replayFile[R any](j *journal, path, format string, tornTailOK bool, parse func([]byte) (R, error), apply func(R) error) (fileHeader, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fileHeader{}, 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, maxLineBytes)
	var h fileHeader
	line, err := r.ReadSlice('\n')
	switch {
	case err == nil:
		if h, err = parseHeader(line, format); err != nil {
			return h, 0, fmt.Errorf("%s:1: %w", path, err)
		}
	case errors.Is(err, io.EOF) && tornTailOK:
		// The process died before the new journal's header was written.
		j.log.Warn("journal: rewriting a header cut off by a crash", "file", path, "bytes", len(line))
		if h, err = j.repairHeader(f); err != nil {
			return h, 0, fmt.Errorf("%s:1: %w", path, err)
		}
		return h, int64(len(encodeHeader(h))), nil
	default:
		return h, 0, fmt.Errorf("%s:1: %w", path, readLineError(err))
	}

	lines := make(chan []replayLine[R], 8)
	stop := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() { readLines(r, parse, lines, stop) })
	defer reader.Wait() // before f is closed
	defer close(stop)

	offset := int64(len(line))
	for batch := range lines {
		for _, l := range batch {
			switch {
			case l.readErr == nil && l.parseErr == nil:
				if err := apply(l.parsed); err != nil {
					return h, 0, fmt.Errorf("%s:%d: %w", path, l.lineNo, err)
				}
				offset += int64(l.size)
			case l.parseErr != nil:
				return h, 0, fmt.Errorf("%s:%d: %w", path, l.lineNo, l.parseErr)
			case errors.Is(l.readErr, io.EOF) && l.size == 0:
				return h, offset, nil
			case errors.Is(l.readErr, io.EOF) && tornTailOK:
				j.log.Warn("journal: dropping an incomplete last line left by a crash; it was never acknowledged",
					"file", path, "line", l.lineNo, "bytes", l.size)
				if err := truncateDurably(f, offset); err != nil {
					return h, 0, fmt.Errorf("%s:%d: %w", path, l.lineNo, err)
				}
				return h, offset, nil
			default:
				return h, 0, fmt.Errorf("%s:%d: %w", path, l.lineNo, readLineError(l.readErr))
			}
		}
	}
	// Unreachable: readLines always ends with a line carrying an error.
	return h, 0, fmt.Errorf("%s: the line reader stopped without saying why", path)
}

// replayLine is one line of a file after its header, read and parsed.
type replayLine[R any] struct {
	lineNo   int
	size     int
	parsed   R
	parseErr error
	readErr  error // set on the last line only: io.EOF at the end of the file
}

// readLines reads lines from r, parses them, and sends them in batches, in
// order, until a read error (io.EOF at the end), which it sends last, or
// until stop is closed.
func readLines[R any](r *bufio.Reader, parse func([]byte) (R, error), lines chan<- []replayLine[R], stop <-chan struct{}) {
	defer close(lines)
	const batchSize = 256
	batch := make([]replayLine[R], 0, batchSize)
	for lineNo := 2; ; lineNo++ {
		line, err := r.ReadSlice('\n')
		l := replayLine[R]{lineNo: lineNo, size: len(line), readErr: err}
		if err == nil {
			l.parsed, l.parseErr = parse(line)
		}
		batch = append(batch, l)
		if len(batch) == batchSize || err != nil || l.parseErr != nil {
			select {
			case lines <- batch:
			case <-stop:
				return
			}
			if err != nil || l.parseErr != nil {
				return
			}
			batch = make([]replayLine[R], 0, batchSize)
		}
	}
}

// readLineError says what a read error other than a clean end means.
func readLineError(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("incomplete last line")
	case errors.Is(err, bufio.ErrBufferFull):
		return fmt.Errorf("line longer than %d bytes", maxLineBytes)
	}
	return err
}

// truncateDurably cuts f to size and fsyncs it.
func truncateDurably(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// repairHeader rewrites the header of a journal whose header was cut off,
// taking the generation from the file name.
func (j *journal) repairHeader(f *os.File) (fileHeader, error) {
	gen, err := j.generationOf(f.Name())
	if err != nil {
		return fileHeader{}, err
	}
	h := fileHeader{Format: j.journalFormat(), Version: 1, Generation: gen}
	if err := f.Truncate(0); err != nil {
		return h, err
	}
	if _, err := f.WriteAt(encodeHeader(h), 0); err != nil {
		return h, err
	}
	return h, f.Sync()
}

func encodeHeader(h fileHeader) []byte {
	line, _ := json.Marshal(h) // Cannot fail: fileHeader is plain data.
	return append(line, '\n')
}

// parseHeader checks the first line of a file of the given format.
func parseHeader(line []byte, format string) (fileHeader, error) {
	var h fileHeader
	if err := decodeStrict(line, &h); err != nil || h.Format != format {
		return h, fmt.Errorf("not a wxlogin %s file", format)
	}
	if h.Version != 1 {
		return h, fmt.Errorf("%s version %d is not supported by this wxlogin", format, h.Version)
	}
	return h, nil
}

// append queues line (a copy) for the next flush and returns the batch it
// is in. The owner appends a change's line under the lock that guards the
// change, once it is made: so lines are in the order of the changes, and a
// snapshot taken after the append includes the change.
func (j *journal) append(line []byte) *batch {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.pending.buf = append(j.pending.buf, line...)
	return j.pending
}

// barrier returns the pending batch: once it is durable, so is every line
// appended before the call.
func (j *journal) barrier() *batch {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.pending
}

// err is why the journal refuses writes, or nil.
func (j *journal) err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// wait returns once b is durable, or with why it cannot be. The first
// waiter to get flushMu writes b, and with it every line appended since
// the previous flush began.
func (j *journal) wait(b *batch) error {
	j.flushMu.Lock()
	defer j.flushMu.Unlock()
	if !b.done {
		j.flushLocked(b)
	}
	return b.err
}

// flushLocked writes and fsyncs the pending batch b. Batches are written in
// the order they were started, so b is the pending one. flushMu is held.
// A closed journal has failed set, so the file is open when err is nil.
func (j *journal) flushLocked(b *batch) {
	j.mu.Lock()
	j.pending = &batch{}
	err := j.failed
	j.mu.Unlock()

	if err == nil && !j.compacting && j.size >= j.compactAt {
		// The snapshot is copied now, after b was taken: it includes every
		// line of b, which goes to the new generation too.
		j.startCompaction(j.snapshot())
	}
	if err == nil {
		err = j.write(b.buf)
	}
	if err != nil {
		j.mu.Lock()
		if j.failed == nil {
			j.failed = err
		}
		j.mu.Unlock()
	}
	b.done, b.err = true, err
}

func (j *journal) write(buf []byte) error {
	if _, err := j.file.Write(buf); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.file.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.size += int64(len(buf))
	return nil
}

// startCompaction switches writes to a new journal generation and writes
// lines as a snapshot in the background. flushMu is held. If the new
// journal cannot be created, writes stay on the current one and compaction
// is put off; the journal stays correct either way.
func (j *journal) startCompaction(lines iter.Seq[[]byte]) {
	through := j.gen
	next, err := j.createJournal(through + 1)
	if err != nil {
		j.log.Warn("journal: cannot start a new generation; compaction put off", "err", err)
		j.compactAt = j.size + minCompactBytes
		return
	}
	if err := j.file.Close(); err != nil {
		j.log.Warn("journal: closing the previous generation", "err", err)
	}
	j.file, j.gen = next, through+1
	j.size = int64(len(encodeHeader(fileHeader{Format: j.journalFormat(), Version: 1, Generation: j.gen})))
	j.compacting = true
	j.compactions.Go(func() {
		size, err := j.writeSnapshot(lines, through)
		j.flushMu.Lock()
		defer j.flushMu.Unlock()
		j.compacting = false
		if err != nil {
			j.log.Warn("journal: snapshot failed; the journals still hold every line", "err", err)
			j.compactAt = j.size + minCompactBytes
			return
		}
		j.compactAt = max(minCompactBytes, size)
	})
}

// writeSnapshot writes lines atomically as the snapshot including journal
// generation through, then deletes the journals it replaces.
func (j *journal) writeSnapshot(lines iter.Seq[[]byte], through int64) (int64, error) {
	var size int64
	err := writeFileAtomic(filepath.Join(j.dir, j.snapshotName()), func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		header := encodeHeader(fileHeader{Format: j.snapshotFormat(), Version: 1, Generation: through})
		size += int64(len(header))
		bw.Write(header) // A write error sticks in bw, and Flush returns it.
		for line := range lines {
			size += int64(len(line))
			if _, err := bw.Write(line); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
	if err != nil {
		return 0, err
	}
	for gen := through; gen >= 1; gen-- {
		err := os.Remove(j.journalPath(gen))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return size, err
		}
	}
	return size, nil
}

// createJournal creates generation gen's file with its header and makes
// its directory entry durable, so that fsyncs of later appends are enough.
func (j *journal) createJournal(gen int64) (*os.File, error) {
	path := j.journalPath(gen)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(encodeHeader(fileHeader{Format: j.journalFormat(), Version: 1, Generation: gen}))
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// close closes the journal and waits for a snapshot being written. Writes
// after close fail with errJournalClosed.
func (j *journal) close() error {
	j.flushMu.Lock()
	j.mu.Lock()
	if j.failed == nil {
		j.failed = errJournalClosed
	}
	j.mu.Unlock()
	var err error
	if j.file != nil {
		err = j.file.Close()
		j.file = nil // No compaction can start from here on.
	}
	j.flushMu.Unlock()
	j.compactions.Wait()
	return err
}

// writeFileAtomic replaces path with what write produces, so that path always
// holds either the old or the new content in full: write to a temp file in
// the same directory (created 0600), fsync, rename, fsync the directory.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // Fails harmlessly once the rename has happened.
	err = write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// syncDir makes renames, creations and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if closeErr := d.Close(); err == nil {
		err = closeErr
	}
	return err
}
