// Package journal is a durable log of lines, which the user store
// keeps its records in. It knows lines, not what they mean. Its owner
// writes each change as one line, and at start-up gets every line back, in
// order, to rebuild its state from. The format of its files, each line
// with its checksum, is journalformat.go's; what a repair reads of damaged
// files, journalrepair.go's.
//
// The journal keeps two kinds of file in its directory, named for its owner
// (here "users"):
//
//   - users.journal.<generation>.jsonl: lines are appended to the newest
//     generation. A line is durable once Wait returns for its batch: each
//     flush writes and fsyncs every line appended since the previous one,
//     so owners that arrive while a flush is under way share the next
//     one (group commit). The generations run on from the snapshot without
//     a gap, each sealed with a trailer when writes move to the next.
//   - users.snapshot.jsonl: the owner's whole state as lines, written
//     atomically (temp file, fsync, rename, fsync of the directory) when the
//     journals have grown as large as the last snapshot. Its header names
//     the newest generation it includes; older journals are then deleted.
//   - users.watermark: where the newest journal stood after the last flush:
//     its generation, its lines and the checksum of the last. Nothing after
//     the newest journal's last line vouches for it, so without this a cut
//     at a line boundary there would pass for the end of the store. It is
//     overwritten in place after each flush, and fsync'd at each rotation,
//     at close, and with the first flush markSyncEvery or more after its
//     last fsync; in between only the kernel's writeback puts it on disk.
//
// Replay reads the snapshot, then the newer journals. A snapshot holds
// every line of the generations it replaces, and may hold the effect of
// lines that are also in the journal after it; so the owner's lines must be
// replayable twice, the last line about a thing winning. A crash can only
// cut the end of the newest journal after the watermark, a batch that was
// never acknowledged, or leave a new generation that has nothing but its
// header: replay removes those and logs it. Anything else that does not
// check out, a line changed on disk, a file cut short (the newest journal
// too, short of its watermark) or missing, a file of another store, is an
// error naming the file and line.
package journal

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
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
	"sync/atomic"
	"time"
	"wxlogin/internal/durable"
)

// Sizes of the journal: a snapshot is not written for less than
// MinCompactBytes of journal, and no line may be longer than maxLineBytes.
const (
	MinCompactBytes = 8 << 20
	maxLineBytes    = 256 << 10
)

// markSyncEvery is how long after its last fsync the watermark is fsync'd
// again, by the next flush. It is written after every flush, but fsync'd
// only so often: after a kill -9 the kernel holds what was written; only a
// power cut can lose what the flushes of less than a second after its last
// fsync wrote, and with it what tells a cut of their lines from a crash
// before them.
const markSyncEvery = time.Second

// ErrClosed is what writes get after Close.
var ErrClosed = errors.New("the store is closed")

// ErrWriteFailed is what every write gets once one failed: the store
// refuses writes until it is opened again.
var ErrWriteFailed = errors.New("the store refuses writes since a write failed")

// Batch is a group of lines written with one fsync: Append returns the
// one a line is in, and Wait waits for it.
type Batch struct {
	buf  []byte // the owner's lines, framed when they are written
	done bool   // set, with err, by the flush that wrote buf
	err  error  // guarded by journal.flushMu, like done
}

// Options are what an owner tells Open.
type Options struct {
	// Meta is the owner's, written in the header of every file the journal
	// creates; replay hands back what the newest file holds.
	Meta json.RawMessage
	// Snapshot is the owner's state as lines, for a snapshot file. It must
	// copy the state when it is called, a state that includes every line
	// appended before the call; the lines are written out later, while
	// appends go on.
	Snapshot func() iter.Seq[[]byte]
	// ReadOnly is for checking a store: replay changes nothing on disk, and
	// what it would repair it lists in notes instead.
	ReadOnly bool
	Log      *slog.Logger // what Replay repairs, and a write's failure
	// Synced, when set, is told of each fsync of an append: how long it
	// took, and its error (the metrics).
	Synced func(took time.Duration, err error)
}

// Journal is the durable log of one owner's lines in a directory.
type Journal struct {
	dir  string
	name string // the owner's, in every file name: "users"
	opts Options
	// fault, in tests, fails the step of a rotation it names (see step).
	fault func(step string) error

	mu      sync.Mutex // guards pending and failed
	pending *Batch     // lines appended since the last flush began
	// failed is set when a write fails. After a failed fsync the kernel may
	// have dropped the dirty pages, so no later write can be trusted to be
	// durable: every write fails until the process is restarted.
	failed error

	flushMu     sync.Mutex // held by the one goroutine writing a batch; guards the fields below
	file        *os.File   // the newest generation, opened O_APPEND; nil before replay and after close
	markFile    *os.File   // the watermark, overwritten in place; nil before replay and after close
	markBuf     []byte     // the watermark's line, reused
	markSynced  time.Time  // when markFile was last fsync'd
	gen         int64
	tally       lineTally // where the newest generation stands: the next line chains from it
	framed      []byte    // the batch being written, framed; reused
	size        int64     // bytes written since the last snapshot began (or, if none, in all the journals)
	compactAt   int64     // size at which to write a new snapshot
	compacting  bool
	compactions sync.WaitGroup // the background snapshot writer, waited for by close
	// compactAsked makes the next flush write a snapshot, once none is being
	// written: an owner asks for one to take data off the disk. Atomic, so
	// that the owner may ask under its own lock.
	compactAsked atomic.Bool

	// What Open and Replay found.
	store        string          // the id in every header of this store's files
	storedMeta   json.RawMessage // the owner's meta in the newest file read
	haveSnapshot bool
	haveMark     bool
	version      int     // the newest format version among the files read
	gens         []int64 // the journal generations on disk, ascending
	storedBytes  int64
	notes        []string // what replay repaired or, read-only, would repair
}

// Open finds the files of name's journal in dir, creating dir if
// needed. The journal takes appends once Replay has read it back.
func Open(dir, name string, opts Options) (*Journal, error) {
	if !opts.ReadOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	j := &Journal{dir: dir, name: name, opts: opts, pending: &Batch{}, compactAt: MinCompactBytes}
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
		case name == j.markName():
			j.haveMark = true
		case strings.HasPrefix(name, "."+j.name+".") && strings.Contains(name, ".tmp"):
			// A snapshot or a new journal whose writer died before renaming
			// it into place: it was never in use.
			path := filepath.Join(dir, name)
			if err := j.repair("remove "+path+", a temporary file left by a crash", func() error { return os.Remove(path) }); err != nil {
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

// StoredMeta is the owner's meta in the newest file Replay read, nil for
// files of the earliest format, which record none.
func (j *Journal) StoredMeta() json.RawMessage { return j.storedMeta }

// StoredBytes is how many bytes of the owner's files Open found: enough to
// size the owner's state before Replay.
func (j *Journal) StoredBytes() int64 { return j.storedBytes }

// Notes are what Replay repaired (the debris of a crash) or, read-only,
// would repair.
func (j *Journal) Notes() []string { return j.notes }

// repair does what replay must change on disk, and logs it; read-only, it
// only notes it.
func (j *Journal) repair(what string, do func() error) error {
	j.notes = append(j.notes, what)
	if j.opts.ReadOnly {
		return nil
	}
	j.opts.Log.Warn("journal: " + what)
	return do()
}

// The names and formats of the journal's files.
func (j *Journal) snapshotName() string   { return j.name + ".snapshot.jsonl" }
func (j *Journal) markName() string       { return j.name + ".watermark" }
func (j *Journal) markPath() string       { return filepath.Join(j.dir, j.markName()) }
func (j *Journal) journalPrefix() string  { return j.name + ".journal." }
func (j *Journal) snapshotFormat() string { return "wxlogin-" + j.name + "-snapshot" }
func (j *Journal) journalFormat() string  { return "wxlogin-" + j.name + "-journal" }

func (j *Journal) journalPath(gen int64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%s%06d.jsonl", j.journalPrefix(), gen))
}

// generationOf reads the generation from a journal's file name.
func (j *Journal) generationOf(path string) (int64, error) {
	gen := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), j.journalPrefix()), ".jsonl")
	return strconv.ParseInt(gen, 10, 64)
}

// Replay hands every stored line of j to its owner, in order: parse
// reads a line (and must not keep it), apply puts it in the owner's state.
// Then j takes appends, to the newest generation.
//
// Parsing runs in a goroutine of its own, ahead of the applying, which must
// go in order (BENCHMARKS.md, start-up).
func Replay[R any](j *Journal, parse func(line []byte) (R, error), apply func(R) error) error {
	mark, err := j.readMark()
	if err != nil {
		return err
	}
	through := int64(0)
	if j.haveSnapshot {
		path := filepath.Join(j.dir, j.snapshotName())
		f, err := replayFile(j, path, j.snapshotFormat(), false, -1, parse, apply)
		if err != nil {
			return err
		}
		if f.header.Version >= 2 && !f.sealed {
			return fmt.Errorf("%s: cut short: a snapshot ends with a trailer, and this one has none", path)
		}
		through = f.header.Generation
		j.compactAt = max(MinCompactBytes, f.size)
	}
	// Journals the snapshot includes are left from a crash between its
	// rename and their removal; they are removed once the rest checks out.
	gens := slices.DeleteFunc(slices.Clone(j.gens), func(gen int64) bool { return gen <= through })
	included := j.gens[:len(j.gens)-len(gens)]
	gens, err = j.dropInterruptedRotation(gens, mark)
	if err != nil {
		return err
	}
	if err := j.checkSequence(gens, through); err != nil {
		return err
	}
	var newest replayedFile
	replayed := make(map[int64]replayedFile, len(gens))
	for i, gen := range gens {
		path, last := j.journalPath(gen), i == len(gens)-1
		watch := int64(-1) // the line whose checksum the watermark records, if it is of this journal
		if mark != nil && mark.Generation == gen {
			watch = mark.Lines
		}
		f, err := replayFile(j, path, j.journalFormat(), last, watch, parse, apply)
		if err != nil {
			return err
		}
		replayed[gen] = f
		if f.header.Generation != gen {
			return fmt.Errorf("%s:1: header says generation %d", path, f.header.Generation)
		}
		switch {
		case f.header.Version >= 2 && !last && !f.sealed:
			return fmt.Errorf("%s: not sealed, yet journal %d follows it: a journal was added or its end was cut", path, gen+1)
		case f.header.Version >= 2 && last && f.sealed:
			return fmt.Errorf("%s: sealed, so journal %d followed it; that journal is missing", path, gen+1)
		}
		j.size += f.size
		j.gen, newest = gen, f
	}
	if err := j.checkMark(mark, gens, through, replayed); err != nil {
		return err
	}
	for _, gen := range included {
		path := j.journalPath(gen)
		if err := j.repair("remove "+path+", which the snapshot includes", func() error { return os.Remove(path) }); err != nil {
			return err
		}
	}
	if j.opts.ReadOnly {
		return nil
	}
	if len(gens) > 0 && newest.header.Version == formatVersion {
		j.file, err = os.OpenFile(j.journalPath(j.gen), os.O_WRONLY|os.O_APPEND, 0)
		j.tally = newest.tally
		if err == nil {
			j.markFile, err = os.OpenFile(j.markPath(), os.O_WRONLY, 0)
			j.markSynced = time.Now()
		}
		return err
	}
	return j.startCurrentFormat(gens, through, newest)
}

// startCurrentFormat starts a new store, or moves one whose newest journal
// is of an earlier format, which is not appended to, onto a new generation
// of the current one. The watermark comes first, naming the new generation
// with no lines: a crash before that generation exists leaves a watermark
// that vouches for nothing (checkMark). A newest journal of version 2 is
// then sealed, as a rotation seals it; one of version 1 has no seal.
func (j *Journal) startCurrentFormat(gens []int64, through int64, newest replayedFile) error {
	gen := max(j.gen, through) + 1
	_, tally := encodeHeader(j.header(gen))
	if err := j.writeMark(markFor(j.store, gen, tally), true); err != nil {
		return fmt.Errorf("%s: %w", j.markPath(), err)
	}
	file, tally, size, err := j.createJournal(gen)
	if err != nil {
		return err
	}
	if len(gens) > 0 && newest.header.Version == 2 {
		path := j.journalPath(j.gen)
		old, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			err = errors.Join(j.step("seal", old, encodeTrailer(newest.tally)), old.Close())
		}
		if err != nil {
			file.Close()
			return fmt.Errorf("%s: sealing it: %w", path, err)
		}
	}
	j.file, j.gen, j.tally = file, gen, tally
	j.size += size
	return nil
}

// readMark reads the watermark, if the store has one.
func (j *Journal) readMark() (*fileMark, error) {
	if !j.haveMark {
		return nil, nil
	}
	data, err := readAtMost(j.markPath(), markSize+1)
	if err != nil {
		return nil, err
	}
	m, err := parseMark(data)
	if err != nil {
		return nil, fmt.Errorf("%s:1: %w", j.markPath(), err)
	}
	return &m, nil
}

// checkMark checks the journals replayed against the watermark: the
// journal it names must hold at least the lines it records, the last of
// them the one it records. What a start-up may find, besides that:
//
//   - no watermark, in a store whose files are of an earlier format, or
//     none at all: there was none to write;
//   - a watermark naming the generation after the newest, with no lines: a
//     new generation's creation was cut short before the generation
//     existed (startCurrentFormat), so it vouches for nothing;
//   - a watermark naming the generation before the newest, which holds no
//     lines: a rotation was cut short after the new generation and the
//     seal, before the watermark moved on (rotate).
//
// Anything else is damage, or files put together from different times.
func (j *Journal) checkMark(mark *fileMark, gens []int64, through int64, replayed map[int64]replayedFile) error {
	newestGen, newest := int64(0), replayedFile{}
	if len(gens) > 0 {
		newestGen = gens[len(gens)-1]
		newest = replayed[newestGen]
	}
	if mark == nil {
		if j.version >= formatVersion {
			return fmt.Errorf("%s: missing, yet the store's files are of the version that keeps one: "+
				"without it a cut of the newest journal cannot be told from a crash", j.markPath())
		}
		return nil
	}
	if j.store != "" && mark.Store != j.store {
		return fmt.Errorf("%s:1: a file of another store (store %s; the journals are of store %s)", j.markPath(), mark.Store, j.store)
	}
	var f replayedFile
	switch gen := mark.Generation; {
	case gen == newestGen+1 && mark.Lines == 0 && newest.header.Version < formatVersion:
		return nil
	case gen == newestGen:
		f = newest
	case gen == newestGen-1 && gen > through && newest.tally.lines == 0:
		f = replayed[gen]
	default:
		return fmt.Errorf("%s:1: records journal %d, and the journals run from %d to %d: "+
			"it, or they, were replaced by a copy from another time", j.markPath(), gen, through+1, newestGen)
	}
	path := j.journalPath(mark.Generation)
	switch {
	case f.tally.lines < mark.Lines:
		return fmt.Errorf("%s: cut short: the watermark (%s) records %d acknowledged lines in it, and it holds %d: %d lines are missing",
			path, j.markName(), mark.Lines, f.tally.lines, mark.Lines-f.tally.lines)
	case f.watched != mark.sum():
		return fmt.Errorf("%s:%d: not the line the watermark (%s) records there: the journal was rewritten, or replaced by another",
			path, mark.Lines+1, j.markName())
	}
	return nil
}

// writeMark records m as the watermark: created whole the first time (temp
// file, fsync, rename, fsync of the directory), then overwritten in place,
// and fsync'd when sync is set or markSyncEvery has passed. flushMu is
// held, or the journal is being opened.
func (j *Journal) writeMark(m fileMark, sync bool) error {
	if err := j.failAt("mark"); err != nil {
		return err
	}
	j.markBuf = appendMark(j.markBuf[:0], m)
	if len(j.markBuf) != markSize {
		// Only a store id far longer than wxlogin's 16 hex digits could do
		// this; a watermark of another length would be refused at the next
		// start, so it is refused now, before anything is acknowledged.
		return fmt.Errorf("%s: a watermark of %d bytes; it must be %d (a store id of %d bytes)", j.markPath(), len(j.markBuf), markSize, len(m.Store))
	}
	if j.markFile == nil {
		err := durable.WriteFile(j.markPath(), func(f *os.File) error {
			_, err := f.Write(j.markBuf)
			return err
		})
		if err == nil {
			j.markFile, err = os.OpenFile(j.markPath(), os.O_WRONLY, 0)
		}
		j.markSynced = time.Now()
		return err
	}
	if _, err := j.markFile.WriteAt(j.markBuf, 0); err != nil {
		return err
	}
	if sync || time.Since(j.markSynced) >= markSyncEvery {
		j.markSynced = time.Now()
		return j.markFile.Sync()
	}
	return nil
}

// header is the header of a new file of generation gen.
func (j *Journal) header(gen int64) fileHeader {
	if j.store == "" {
		var id [8]byte
		rand.Read(id[:])                    // Never fails: crypto/rand.Read crashes the program rather than return short.
		j.store = hex.EncodeToString(id[:]) // a store of the earlier format, or a new one
	}
	return fileHeader{Format: j.journalFormat(), Version: formatVersion, Generation: gen, Store: j.store, Meta: j.opts.Meta}
}

// dropInterruptedRotation removes the newest journal when a rotation was
// cut short: it holds nothing but its header (or less), and the journal
// before it was never sealed, so no write went to it. (Journals of the
// earlier format were never sealed, and never cut short so.) It returns
// the generations left.
func (j *Journal) dropInterruptedRotation(gens []int64, mark *fileMark) ([]int64, error) {
	if cut, err := j.interruptedRotation(gens, mark); err != nil || !cut {
		return gens, err
	}
	path := j.journalPath(gens[len(gens)-1])
	err := j.repair("remove "+path+", left empty by a rotation cut short", func() error {
		if err := os.Remove(path); err != nil {
			return err
		}
		return durable.SyncDir(j.dir)
	})
	return gens[:len(gens)-1], err
}

// interruptedRotation reports whether the newest of gens is a rotation
// cut short, which dropInterruptedRotation removes.
func (j *Journal) interruptedRotation(gens []int64, mark *fileMark) (bool, error) {
	if len(gens) < 2 {
		return false, nil
	}
	newest, previous := gens[len(gens)-1], gens[len(gens)-2]
	if mark != nil && mark.Generation == newest && j.versionOf(j.journalPath(previous)) == formatVersion {
		// The watermark moved on to it, which a rotation does only once the
		// journal before it is sealed: that one is damaged, and replay says
		// so; the new one is not a rotation cut short, and stays. (A move
		// from an earlier format writes the watermark first, before the
		// generation it names: startCurrentFormat.)
		return false, nil
	}
	empty, err := j.holdsNoLines(j.journalPath(newest))
	if err != nil || !empty {
		return false, err
	}
	sealed, err := j.endsSealed(j.journalPath(previous))
	return err == nil && !sealed, err
}

// versionOf is the format version of the journal at path, as its header
// says, or 0 if the header cannot be read.
func (j *Journal) versionOf(path string) int {
	data, err := readAtMost(path, maxLineBytes)
	if err != nil {
		return 0
	}
	first, _, _ := bytes.Cut(data, []byte("\n"))
	h, _, err := parseHeader(append(first, '\n'), j.journalFormat())
	if err != nil {
		return 0
	}
	return h.Version
}

// holdsNoLines reports whether the journal at path has no line after its
// header: it is empty, holds only its header, or part of it.
func (j *Journal) holdsNoLines(path string) (bool, error) {
	data, err := readAtMost(path, maxLineBytes)
	if err != nil {
		return false, err
	}
	first, rest, complete := bytes.Cut(data, []byte("\n"))
	if !complete {
		return true, nil // at most a header cut short
	}
	if _, _, err := parseHeader(append(first, '\n'), j.journalFormat()); err != nil {
		return false, nil // damage, which replay reports
	}
	return len(rest) == 0, nil
}

// endsSealed reports whether the journal at path ends with a trailer, or is
// of the earlier format, which has none.
func (j *Journal) endsSealed(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var first [1]byte
	if _, err := f.ReadAt(first[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	if first[0] == '{' {
		return true, nil // version 1
	}
	info, err := f.Stat()
	if err != nil {
		return false, err
	}
	const tail = 512 // A trailer line is under 100 bytes.
	start := max(0, info.Size()-tail)
	data := make([]byte, info.Size()-start)
	if _, err := f.ReadAt(data, start); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		return false, nil
	}
	lines := bytes.Split(data[:len(data)-1], []byte("\n"))
	_, err = readTrailer(append(lines[len(lines)-1], '\n'))
	return err == nil, nil
}

// checkSequence checks that the journals run on from the snapshot's
// generation through the newest without a gap.
func (j *Journal) checkSequence(gens []int64, through int64) error {
	if len(gens) == 0 && !j.haveSnapshot {
		return nil // a new store
	}
	if len(gens) > 0 && gens[0] > 1 && !j.haveSnapshot {
		return fmt.Errorf("%s: the first journal, yet not generation 1: the snapshot that held the journals before it is missing",
			j.journalPath(gens[0]))
	}
	newest := through + 1 // a snapshot is only written once the generation after it exists
	if len(gens) > 0 {
		newest = gens[len(gens)-1]
	}
	for gen, i := through+1, 0; gen <= newest; gen++ {
		if i < len(gens) && gens[i] == gen {
			i++
			continue
		}
		return fmt.Errorf("%s: missing: the journals run on from the snapshot through %d to %d, and this one is among them",
			j.journalPath(gen), through, newest)
	}
	return nil
}

// replayedFile is what replayFile found in one file.
type replayedFile struct {
	header fileHeader
	size   int64
	tally  lineTally // where it stands: its r lines, and its last checksum
	sealed bool      // it ends with a trailer that matches them
	// watched is the checksum of the line replayFile was asked to watch,
	// the watermark's (of the header for line 0), if the file reached it.
	watched uint32
}

// replayFile applies the lines of one file. With newest (the newest
// journal), a last line without its newline is a write cut off by a crash,
// never acknowledged: it is cut off the file and logged, unless it is a
// whole line whose newline was damaged. Anywhere else an incomplete line is
// damage, reported as an error. watch, unless negative, is the number of
// r lines after which the file's checksum is kept in watched.
func replayFile[R any](j *Journal, path, format string, newest bool, watch int64, parse func([]byte) (R, error), apply func(R) error) (replayedFile, error) {
	flag := os.O_RDWR
	if j.opts.ReadOnly {
		flag = os.O_RDONLY
	}
	file, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return replayedFile{}, err
	}
	defer file.Close()
	r := bufio.NewReaderSize(file, maxLineBytes)
	var f replayedFile
	line, err := r.ReadSlice('\n')
	switch {
	case err == nil:
		if f.header, f.tally, err = parseHeader(line, format); err != nil {
			return f, fmt.Errorf("%s:1: %w", path, err)
		}
	case errors.Is(err, io.EOF) && newest && j.store == "" && len(line) > 0 && line[0] == '{':
		// The process died while a journal of the earlier format, created
		// in place, was getting its header: it holds nothing. Those of the
		// current format are created whole and renamed into place, so one
		// without a whole header, or an empty one, was cut or emptied since:
		// damage, reported below.
		if err := j.repair("rewrite the header of "+path+", cut off by a crash", func() error { return j.repairHeader(file) }); err != nil {
			return f, fmt.Errorf("%s:1: %w", path, err)
		}
		f.header = j.header(mustGeneration(j, path))
		line, tally := encodeHeader(f.header)
		f.size, f.tally = int64(len(line)), tally
		return f, nil
	default:
		return f, fmt.Errorf("%s:1: %w", path, readLineError(err))
	}
	if err := j.adopt(f.header); err != nil {
		return f, fmt.Errorf("%s:1: %w", path, err)
	}
	if watch == 0 {
		f.watched = f.tally.last
	}

	lines := make(chan []replayLine[R], 8)
	stop := make(chan struct{})
	var reader sync.WaitGroup
	headerTally := f.tally
	reader.Go(func() { readLines(r, f.header.Version >= 2, headerTally, parse, lines, stop) })
	defer reader.Wait() // before file is closed
	defer close(stop)

	f.size = int64(len(line))
	for batch := range lines {
		for _, l := range batch {
			switch {
			case l.readErr == nil && l.parseErr == nil:
				if l.trailer {
					f.sealed = true
				} else {
					if err := apply(l.parsed); err != nil {
						return f, fmt.Errorf("%s:%d: %w", path, l.lineNo, err)
					}
					f.tally = lineTally{lines: f.tally.lines + 1, last: l.sum}
					if f.tally.lines == watch {
						f.watched = l.sum
					}
				}
				f.size += int64(l.size)
			case l.parseErr != nil:
				return f, fmt.Errorf("%s:%d: %w", path, l.lineNo, l.parseErr)
			case errors.Is(l.readErr, io.EOF) && l.size == 0:
				return f, nil
			case errors.Is(l.readErr, io.EOF) && newest && !l.wholeLine && f.tally.lines < watch:
				// The watermark says this line, or one after it, was
				// acknowledged: it is not a crash's debris, and it stays on
				// disk for the operator (checkMark says what is missing).
				return f, nil
			case errors.Is(l.readErr, io.EOF) && newest && !l.wholeLine:
				what := fmt.Sprintf("drop the incomplete last line (%d bytes) of %s:%d, cut off by a crash; it was never acknowledged", l.size, path, l.lineNo)
				if err := j.repair(what, func() error { return truncateDurably(file, f.size) }); err != nil {
					return f, fmt.Errorf("%s:%d: %w", path, l.lineNo, err)
				}
				return f, nil
			case errors.Is(l.readErr, io.EOF) && l.wholeLine:
				return f, fmt.Errorf("%s:%d: the last line's newline was changed on disk", path, l.lineNo)
			default:
				return f, fmt.Errorf("%s:%d: %w", path, l.lineNo, readLineError(l.readErr))
			}
		}
	}
	// Unreachable: readLines always ends with a line carrying an error.
	return f, fmt.Errorf("%s: the line reader stopped without saying why", path)
}

// adopt checks that a file's header belongs with the files read before it,
// and keeps its store id and the owner's meta.
func (j *Journal) adopt(h fileHeader) error {
	j.version = max(j.version, h.Version)
	if h.Version < 2 {
		return nil
	}
	if j.store != "" && h.Store != j.store {
		return fmt.Errorf("a file of another store (store %s; the files before it are of store %s)", h.Store, j.store)
	}
	j.store, j.storedMeta = h.Store, h.Meta
	return nil
}

// mustGeneration is the generation in a journal's name, which Open
// has checked.
func mustGeneration(j *Journal, path string) int64 {
	gen, _ := j.generationOf(path)
	return gen
}

// replayLine is one line of a file after its header, read and parsed.
type replayLine[R any] struct {
	lineNo   int
	size     int
	parsed   R
	sum      uint32 // the line's checksum
	trailer  bool   // the line is the file's trailer, and it matched
	parseErr error
	readErr  error // set on the last line only: io.EOF at the end of the file
	// wholeLine marks a last line without its newline that is a whole line
	// but for it, checksum and all: damage, not a write cut short.
	wholeLine bool
}

// readLines reads lines from r, checks their frames when framed (chaining
// from tally, where the file stands after its header), parses them, and
// sends them in batches, in order, until a read error (io.EOF at the end),
// which it sends last, or until stop is closed.
func readLines[R any](r *bufio.Reader, framed bool, tally lineTally, parse func([]byte) (R, error), lines chan<- []replayLine[R], stop <-chan struct{}) {
	defer close(lines)
	const batchSize = 256
	batch := make([]replayLine[R], 0, batchSize)
	sealed := false
	for lineNo := 2; ; lineNo++ {
		line, err := r.ReadSlice('\n')
		l := replayLine[R]{lineNo: lineNo, size: len(line), readErr: err}
		switch {
		case sealed && len(line) > 0:
			l.parseErr = errors.New("a line after the trailer, which ends the file")
		case err != nil:
			if framed && len(line) > 0 {
				_, _, _, frameErr := readFramed(append(bytes.Clone(line[:len(line)-1]), '\n'), tally.last)
				l.wholeLine = frameErr == nil
			}
		case !framed:
			l.parsed, l.parseErr = parse(line)
		default:
			l.parsed, l.sum, l.trailer, l.parseErr = readLine(line, parse, tally)
			if l.trailer {
				sealed = true
			} else if l.parseErr == nil {
				tally = lineTally{lines: tally.lines + 1, last: l.sum}
			}
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

// readLine checks a framed line that follows where tally stands, and parses
// an r line's text; a trailer is checked against tally.
func readLine[R any](line []byte, parse func([]byte) (R, error), tally lineTally) (parsed R, sum uint32, trailer bool, err error) {
	kind, text, sum, err := readFramed(line, tally.last)
	switch {
	case err != nil:
		return parsed, 0, false, err
	case kind == kindTrailer:
		return parsed, 0, true, checkTrailer(text, tally)
	case kind == kindHeader:
		return parsed, 0, false, errors.New("a header after the first line")
	}
	parsed, err = parse(text)
	return parsed, sum, false, err
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

// readAtMost reads up to n bytes from the start of the file at path.
func readAtMost(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// truncateDurably cuts f to size and fsyncs it.
func truncateDurably(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// repairHeader rewrites the header of a journal whose header was cut off.
func (j *Journal) repairHeader(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	line, _ := encodeHeader(j.header(mustGeneration(j, f.Name())))
	if _, err := f.WriteAt(line, 0); err != nil {
		return err
	}
	return f.Sync()
}

// CompactSoon asks for a snapshot at the next flush, or at the first after
// the one being written: the journals it replaces are then deleted.
func (j *Journal) CompactSoon() { j.compactAsked.Store(true) }

// Append queues line (a copy) for the next flush and returns the batch it
// is in. The owner appends a change's line under the lock that guards the
// change, once it is made: so lines are in the order of the changes, and a
// snapshot taken after the append includes the change. A line ends with
// its newline and holds no other.
func (j *Journal) Append(line []byte) *Batch {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.pending.buf = append(j.pending.buf, line...)
	return j.pending
}

// Barrier returns the pending batch: once it is durable, so is every line
// appended before the call.
func (j *Journal) Barrier() *Batch {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.pending
}

// Settle returns once every line appended before the call is durable, or
// with why one cannot be. Unlike Wait(Barrier()), it writes nothing when
// no line is pending: it then only waits for the flush under way, if any,
// which took every earlier line when it began.
func (j *Journal) Settle() error {
	j.mu.Lock()
	b := j.pending
	pending := len(b.buf) > 0
	j.mu.Unlock()
	if pending {
		return j.Wait(b)
	}
	j.flushMu.Lock() // held by the flush under way until it is done
	err := j.Err()
	j.flushMu.Unlock()
	if err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// Err is why the journal refuses writes, or nil.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// WriteFailure is the write failure that made the journal refuse writes,
// or nil: nil too once it is closed after none.
func (j *Journal) WriteFailure() error {
	if err := j.Err(); !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// Wait returns once b is durable, or with why it cannot be. The first
// waiter to get flushMu writes b, and with it every line appended since
// the previous flush began.
func (j *Journal) Wait(b *Batch) error {
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
func (j *Journal) flushLocked(b *Batch) {
	j.mu.Lock()
	j.pending = &Batch{}
	err := j.failed
	j.mu.Unlock()

	if err == nil && !j.compacting && (j.size >= j.compactAt || j.compactAsked.Load()) {
		err = j.rotate()
	}
	if err == nil {
		err = j.write(b)
	}
	if err != nil {
		err = j.fail(err)
	}
	b.done, b.err = true, err
}

// fail makes every later write fail with err, wrapped in ErrWriteFailed,
// and returns what they get. The first failure is logged, at error level:
// the store is read-only until wxlogin restarts.
func (j *Journal) fail(err error) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed == nil {
		j.failed = fmt.Errorf("%w: %w", ErrWriteFailed, err)
		j.opts.Log.Error("journal: a write failed, so no later write can be trusted to be durable; every write is refused until wxlogin restarts",
			"err", err)
	}
	return j.failed
}

// write frames b's lines, each chaining from the one before, appends them
// to the newest generation and fsyncs it. flushMu is held.
func (j *Journal) write(b *Batch) error {
	framed, tally := j.framed[:0], j.tally
	for rest := b.buf; len(rest) > 0; {
		line := rest[:bytes.IndexByte(rest, '\n')+1]
		framed, tally.last = appendFramed(framed, tally.last, kindRecord, line)
		tally.lines++
		rest = rest[len(line):]
	}
	if cap(framed) <= maxLineBytes {
		j.framed = framed // kept for the next batch, unless a rare big one
	}
	if err := j.failAt("write"); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := j.file.Write(framed); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	start := time.Now()
	err := j.file.Sync()
	if j.opts.Synced != nil {
		j.opts.Synced(time.Since(start), err)
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.size += int64(len(framed))
	j.tally = tally
	if err := j.writeMark(markFor(j.store, j.gen, tally), false); err != nil {
		return fmt.Errorf("journal: %s: %w", j.markPath(), err)
	}
	return nil
}

// rotate switches writes to a new journal generation and writes a
// snapshot in the background. flushMu is held. The new generation is
// created whole before the current one is sealed: if it cannot be, writes
// stay on the current one and compaction is put off, to be tried again
// later. A failure to seal is a failed write, which it returns.
func (j *Journal) rotate() error {
	// The snapshot is copied first: the flush that called rotate has taken
	// its batch, so the copy includes every line of it, and the batch goes
	// to the new generation too.
	asked := j.compactAsked.Swap(false)
	lines := j.opts.Snapshot()
	through := j.gen
	next, nextTally, nextSize, err := j.createJournal(through + 1)
	if err != nil {
		j.opts.Log.Warn("journal: cannot start a new generation; compaction put off", "err", err)
		j.compactAt = j.size + MinCompactBytes
		j.compactAsked.Store(asked) // asked for, it is tried again at the next flush
		return nil
	}
	if err := j.step("seal", j.file, encodeTrailer(j.tally)); err != nil {
		next.Close()
		return fmt.Errorf("journal: sealing generation %d: %w", through, err)
	}
	if err := j.file.Close(); err != nil {
		j.opts.Log.Warn("journal: closing the previous generation", "err", err)
	}
	j.file, j.gen, j.tally, j.size = next, through+1, nextTally, nextSize
	// The watermark moves on only now that the generation it named is
	// sealed: until it does, a start-up checks that one (checkMark).
	if err := j.writeMark(markFor(j.store, j.gen, j.tally), true); err != nil {
		return fmt.Errorf("journal: %s: %w", j.markPath(), err)
	}
	j.compacting = true
	j.compactions.Go(func() {
		size, err := j.writeSnapshot(lines, through)
		j.flushMu.Lock()
		j.compacting = false
		if err != nil {
			j.opts.Log.Warn("journal: snapshot failed; the journals still hold every line", "err", err)
			j.compactAt = j.size + MinCompactBytes
			j.compactAsked.Store(j.compactAsked.Load() || asked)
			j.flushMu.Unlock()
			return
		}
		j.compactAt = max(MinCompactBytes, size)
		j.flushMu.Unlock()
		if j.compactAsked.Load() {
			// Asked for while this one was being written: its copy of the
			// owner's state came too early. The next one starts now, with a
			// flush of whatever is pending, rather than at the next write.
			j.Wait(j.Barrier())
		}
	})
	return nil
}

// step writes data to f and fsyncs it, as the step of a rotation so named.
// A fault set for the step (tests only) writes half of data and fails, as a
// disk that fills up in the middle of a write does.
func (j *Journal) step(name string, f *os.File, data []byte) error {
	if j.fault != nil {
		if err := j.fault(name); err != nil {
			f.Write(data[:len(data)/2])
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// InjectFault, for tests, makes fault decide whether each step of a write
// or a rotation fails ("write", "create", "header", "rename", "sync dir",
// "seal", "mark", "snapshot"): a step it fails writes half of what it
// writes, as a disk that fills up does, and fails with its error.
func (j *Journal) InjectFault(fault func(step string) error) {
	j.flushMu.Lock()
	defer j.flushMu.Unlock()
	j.fault = fault
}

// WaitCompactions waits for the snapshot being written, if one is.
func (j *Journal) WaitCompactions() { j.compactions.Wait() }

// CompactOnNextWrite, for tests, makes the next flush start a snapshot,
// once the one being written, if any, is done: as if the journals had
// grown to the size that starts one. Unlike CompactSoon, a snapshot that
// then fails is put off as one of size is.
func (j *Journal) CompactOnNextWrite() {
	j.compactions.Wait()
	j.flushMu.Lock()
	defer j.flushMu.Unlock()
	j.compactAt = 0
}

// failAt is the fault set for the step so named, or nil.
func (j *Journal) failAt(name string) error {
	if j.fault == nil {
		return nil
	}
	return j.fault(name)
}

// createJournal creates generation gen's file whole: its header is
// written and fsync'd in a temporary file, which is renamed into place,
// and the directory fsync'd. The file is returned open for appending
// (O_APPEND, so that no write lands anywhere but at its end, and under its
// own name, which errors then give); it stands at tally, and holds size
// bytes.
func (j *Journal) createJournal(gen int64) (*os.File, lineTally, int64, error) {
	path := j.journalPath(gen)
	header, tally := encodeHeader(j.header(gen))
	if err := j.failAt("create"); err != nil {
		return nil, tally, 0, err
	}
	tmp, err := os.CreateTemp(j.dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, tally, 0, err
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := j.step("header", tmp, header); err != nil {
		return nil, tally, 0, err
	}
	if err := j.failAt("rename"); err != nil {
		return nil, tally, 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, tally, 0, err
	}
	renamed = true
	tmp.Close()
	err = j.failAt("sync dir")
	if err == nil {
		err = durable.SyncDir(j.dir)
	}
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, tally, 0, err
	}
	return f, tally, int64(len(header)), nil
}

// writeSnapshot writes lines atomically as the snapshot including journal
// generation through, then deletes the journals it replaces.
func (j *Journal) writeSnapshot(lines iter.Seq[[]byte], through int64) (int64, error) {
	if err := j.failAt("snapshot"); err != nil {
		return 0, err
	}
	var size int64
	err := durable.WriteFile(filepath.Join(j.dir, j.snapshotName()), func(w *os.File) error {
		n, err := j.writeSnapshotTo(w, lines, through)
		size = n
		return err
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
			// The snapshot is written; the next start-up removes what it holds.
			j.opts.Log.Warn("journal: cannot remove a journal the snapshot holds", "err", err)
			break
		}
	}
	return size, nil
}

// writeSnapshotTo writes lines to w as a snapshot file including journal
// generation through: its header, each line framed, and its trailer. It
// returns how many bytes it wrote.
func (j *Journal) writeSnapshotTo(w io.Writer, lines iter.Seq[[]byte], through int64) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	h := j.header(through)
	h.Format = j.snapshotFormat()
	header, tally := encodeHeader(h)
	bw.Write(header) // A write error sticks in bw, and Flush returns it.
	size := int64(len(header))
	var framed []byte
	for line := range lines {
		framed, tally.last = appendFramed(framed[:0], tally.last, kindRecord, line)
		tally.lines++
		size += int64(len(framed))
		if _, err := bw.Write(framed); err != nil {
			return size, err
		}
	}
	trailer := encodeTrailer(tally)
	bw.Write(trailer)
	return size + int64(len(trailer)), bw.Flush()
}

// Close closes the journal and waits for a snapshot being written. Writes
// after Close fail with ErrClosed. If a write had failed, Close
// says so: what was acknowledged is durable, but the store took no write
// since.
func (j *Journal) Close() error {
	j.flushMu.Lock()
	j.mu.Lock()
	failed := j.failed
	if j.failed == nil {
		j.failed = ErrClosed
	}
	j.mu.Unlock()
	var err error
	if j.file != nil {
		err = j.file.Close()
		j.file = nil // No compaction can start from here on.
	}
	err = errors.Join(err, j.closeMark())
	j.flushMu.Unlock()
	j.compactions.Wait()
	if failed != nil && !errors.Is(failed, ErrClosed) {
		err = errors.Join(fmt.Errorf("writes had failed: %w", failed), err)
	}
	return err
}

// closeMark fsyncs the watermark and closes it. flushMu is held, or the
// journal is not in use.
func (j *Journal) closeMark() error {
	if j.markFile == nil {
		return nil
	}
	err := errors.Join(j.markFile.Sync(), j.markFile.Close())
	j.markFile = nil
	if err != nil {
		return fmt.Errorf("%s: %w", j.markPath(), err)
	}
	return nil
}

// WriteBackup writes the owner's state as it is now to w, in a snapshot's
// format, once every line of it is durable. Appends go on meanwhile: the
// owner copies its state in one step, and the copy is written after.
func (j *Journal) WriteBackup(w io.Writer) error {
	lines := j.opts.Snapshot()
	if err := j.Wait(j.Barrier()); err != nil {
		return err
	}
	_, err := j.writeSnapshotTo(w, lines, 0)
	return err
}

// ReplaySnapshot hands the lines of a snapshot file at path, such as a
// backup, to an owner as Replay would, with every check, and returns the
// meta its owner recorded in it (Options.Meta). It changes nothing.
func ReplaySnapshot[R any](path, name string, parse func(line []byte) (R, error), apply func(R) error) (meta json.RawMessage, err error) {
	j := &Journal{name: name, opts: Options{ReadOnly: true, Log: slog.New(slog.DiscardHandler)}}
	f, err := replayFile(j, path, j.snapshotFormat(), false, -1, parse, apply)
	if err != nil {
		return nil, err
	}
	if f.header.Version < 2 || !f.sealed {
		return nil, fmt.Errorf("%s: cut short: a snapshot ends with a trailer, and this one has none", path)
	}
	return f.header.Meta, nil
}

// Create writes lines as the snapshot of a new store in dir,
// which must hold none of name's files, and the store's first journal
// after it. The journal is closed; open the store to use it.
func Create(dir, name string, meta json.RawMessage, lines iter.Seq[[]byte]) error {
	j, err := Open(dir, name, Options{Meta: meta, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	if j.haveSnapshot || len(j.gens) > 0 {
		return fmt.Errorf("%s already holds a store", dir)
	}
	return j.ReplaceWith(lines)
}

// ReplaceWith writes lines as a new store in j's directory, in place of
// the files there, so that a crash at any moment leaves the old files,
// which a start-up reads (or refuses) as before, the new store, or,
// between the new snapshot and the new watermark, the new store with the
// old store's watermark, which a start-up refuses and ReplaceWith run
// again replaces. The new store's first journal comes first, after every
// old generation, and a store of its own, which the old files refuse; then
// its snapshot, renamed into place, which takes every old journal as
// included in it; then its watermark. The old watermark is replaced last:
// until the new snapshot holds what lines has, it is the only count of
// the lines cut from the old newest journal, which a repair run again
// after a crash needs to keep their ids unused.
func (j *Journal) ReplaceWith(lines iter.Seq[[]byte]) error {
	through := int64(0)
	if len(j.gens) > 0 {
		through = j.gens[len(j.gens)-1]
	}
	if j.haveSnapshot {
		// The old snapshot's generation, when its header can be read; the
		// new one must include it too.
		if data, err := readAtMost(filepath.Join(j.dir, j.snapshotName()), maxLineBytes); err == nil {
			first, _, _ := bytes.Cut(data, []byte("\n"))
			if h, _, err := parseHeader(append(first, '\n'), j.snapshotFormat()); err == nil {
				through = max(through, h.Generation)
			}
		}
	}
	j.store = "" // a new store
	f, tally, _, err := j.createJournal(through + 1)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := j.writeSnapshot(lines, through); err != nil {
		return err
	}
	j.markFile = nil // replaced whole: the old one is of the old store
	err = j.writeMark(markFor(j.store, through+1, tally), true)
	return errors.Join(err, j.closeMark())
}
