package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"wxlogin/internal/strictjson"
)

// This file is what a repair reads of a damaged journal: every line that
// checks out, in order, for the owner to keep; each line that does not,
// with why, for the owner to drop; and how many acknowledged lines the
// watermark says are missing from the end. A line one flipped bit away
// from checking out is corrected, not dropped: the checksum that found
// the flip also finds where it is (for a line of a few hundred bytes, one
// bit's flip and another's never give the same checksum). It changes
// nothing on disk; wxlogin repair writes what the owner keeps as a new
// store.

// Report is what Salvage found, besides the lines it handed
// on.
type Report struct {
	Corrected []string // lines a flipped bit is corrected in, each with where
	Dropped   []string // lines dropped, or files lost, each with why
	// Missing is how many acknowledged lines the watermark records that
	// are not in the files: cut from the end of the journal it names.
	Missing int64
	// Uncounted is set when lines may be lost that nothing counts: the
	// store keeps a watermark and it is missing or unreadable, so lines cut
	// from the end cannot be counted; or a file is missing or unreadable, or
	// one that ends with a trailer (a snapshot, a journal another follows)
	// was cut, and the trailer that counted its lines with it.
	Uncounted bool
	// Meta is the owner's meta in the newest header read, so that a
	// repaired store keeps what its owner recorded of itself.
	Meta json.RawMessage
}

// maxCorrectedLine bounds the lines a repair tries to correct, far longer
// than any record wxlogin writes: the bits of a line's frame are flipped in
// turn, and each one checks the whole line again.
const maxCorrectedLine = 4 << 10

// salvager hands the lines of a damaged journal's files to an owner.
type salvager[R any] struct {
	rep   *Report
	parse func([]byte) (R, error)
	apply func(R) error
	// lost is told the text of every line that is dropped, damaged or not,
	// so that the owner can tell what it may have held (a user's id); nil
	// for lines taken out, whose text is gone.
	lost        func(text []byte)
	maxVersion  int // the newest format version among the headers read
	mark        *fileMark
	markName    string
	markCounted bool // the journal the watermark names was read
}

// Salvage hands the owner every line of j's files that checks out
// (corrected if one bit was flipped), in order, and lost the text of each
// one that does not, or that apply refuses: what a repair keeps and drops.
// Journals the snapshot holds are skipped, as a start-up skips them. It
// changes nothing.
func Salvage[R any](j *Journal, parse func([]byte) (R, error), apply func(R) error, lost func(text []byte)) Report {
	var rep Report
	s := &salvager[R]{rep: &rep, parse: parse, apply: apply, lost: lost}
	s.readMark(j)
	through := int64(0)
	if j.haveSnapshot {
		if h, ok := s.file(filepath.Join(j.dir, j.snapshotName()), 0, true); ok {
			through = h.Generation
		}
	} else if len(j.gens) > 0 && j.gens[0] > 1 {
		rep.Uncounted = true
		s.drop("%s: missing: every line before journal %d is lost", filepath.Join(j.dir, j.snapshotName()), j.gens[0])
	}
	gens := slices.DeleteFunc(slices.Clone(j.gens), func(gen int64) bool { return gen <= through })
	if cut, err := j.interruptedRotation(gens, s.mark); err == nil && cut {
		gens = gens[:len(gens)-1] // a crash's debris, as a start-up takes it: no line went to it
	}
	next := through + 1 // the generation expected next
	for i, gen := range gens {
		for ; next < gen; next++ {
			rep.Uncounted = true
			s.drop("%s: missing: every line it held is lost", j.journalPath(next))
		}
		s.file(j.journalPath(gen), gen, i < len(gens)-1)
		next = gen + 1
	}
	if m := s.mark; m != nil && !s.markCounted && m.Generation > through && m.Lines > 0 {
		rep.Missing += m.Lines
		s.drop("%s: missing: the watermark (%s) records %d acknowledged lines in it", j.journalPath(m.Generation), j.markName(), m.Lines)
	}
	if !j.haveMark && s.maxVersion >= formatVersion {
		rep.Uncounted = true
		s.drop("%s: missing, so lines cut from the end of the newest journal cannot be counted", j.markPath())
	}
	return rep
}

// drop notes what a repair drops.
func (s *salvager[R]) drop(format string, args ...any) {
	s.rep.Dropped = append(s.rep.Dropped, fmt.Sprintf(format, args...))
}

// readMark reads the watermark into s.mark, correcting a flipped bit;
// s.mark stays nil if there is none to go by, and the report says why.
func (s *salvager[R]) readMark(j *Journal) {
	if !j.haveMark {
		return
	}
	path := j.markPath()
	data, err := readAtMost(path, markSize+1)
	if err != nil {
		s.rep.Uncounted = true
		s.drop("%s: unreadable, so lines cut from the end of the newest journal cannot be counted: %v", path, err)
		return
	}
	m, err := parseMark(data)
	if err != nil {
		if fixed, _, at, ok := correctLine([][]byte{data}, nil); ok && len(fixed) == 1 {
			if m, err = parseMark(fixed[0]); err == nil {
				s.rep.Corrected = append(s.rep.Corrected, fmt.Sprintf("%s:1: %s", path, at))
			}
		}
	}
	if err != nil {
		s.rep.Uncounted = true
		s.drop("%s:1: %v, so lines cut from the end of the newest journal cannot be counted", path, err)
		return
	}
	s.mark, s.markName = &m, j.markName()
}

// file hands on the lines of the file at path, which is journal gen (0
// for the snapshot), and returns its header, if it could be read. It
// counts the journal's lines against the watermark, if that names it.
// sealed says the file ends with a trailer, which counts its lines: one
// that does not was cut, and how many lines went with the trailer nothing
// counts.
func (s *salvager[R]) file(path string, gen int64, sealed bool) (fileHeader, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		s.rep.Uncounted = true
		s.drop("%s: unreadable, so all it holds: %v", path, err)
		return fileHeader{}, false
	}
	var f salvagedFile
	if len(data) > 0 && data[0] == '{' {
		f = s.unframed(path, data)
	} else {
		f = s.framed(path, data)
		if sealed && !endsWithTrailerLine(data) {
			s.rep.Uncounted = true
			s.drop("%s: cut short: it has no trailer, so the lines cut from its end cannot be counted", path)
		}
	}
	if m := s.mark; m != nil && gen == m.Generation {
		s.markCounted = true
		if f.haveHeader && f.header.Store != m.Store {
			// Left by another store (a repair cut short, a copy): it counts
			// nothing of this one's.
			s.mark = nil
			s.rep.Uncounted = true
			s.drop("%s: of another store, so lines cut from the end of %s cannot be counted", s.markName, path)
		} else if !slices.Contains(f.sums, m.sum()) && f.records < m.Lines {
			// The line the watermark records is not there, and lines are
			// short of its count: cut from the end. (Lines taken out
			// before it, or damaged, are dropped where they were.)
			s.rep.Missing += m.Lines - f.records
			s.drop("%s: cut short: the watermark (%s) records %d acknowledged lines in it, and it holds %d: %d lines are missing",
				path, s.markName, m.Lines, f.records, m.Lines-f.records)
		}
	}
	return f.header, f.haveHeader
}

// endsWithTrailerLine reports whether data's last line is whole and of a
// trailer's kind, whatever damage its checksum or text took: the lines
// before it are all there were.
func endsWithTrailerLine(data []byte) bool {
	if !bytes.HasSuffix(data, []byte("\n")) {
		return false
	}
	last := data[bytes.LastIndexByte(data[:len(data)-1], '\n')+1:]
	return len(last) > 0 && last[0] == kindTrailer
}

// salvagedFile is what a repair found in one file.
type salvagedFile struct {
	header     fileHeader
	haveHeader bool
	records    int64    // its r lines, kept or dropped
	sums       []uint32 // the checksums of the lines kept
}

// framed hands on the lines of a file of the current format.
func (s *salvager[R]) framed(path string, data []byte) salvagedFile {
	var f salvagedFile
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	// sums are the checksums a next line may chain from: each line's, and
	// for a damaged line also the one its text gives, in case it was its
	// checksum that was damaged. A line may chain from one further back
	// than the last: lines were taken out, and it is those a repair drops.
	var sums []uint32
	take := func(lineNo int, line []byte) {
		kind, text, sum, _ := splitFramed(line)
		sums = append(sums, sum)
		f.sums = append(f.sums, sum)
		switch kind {
		case kindHeader:
			if h, _, err := parseHeader(line, h0(text)); err == nil && !f.haveHeader {
				f.header, f.haveHeader = h, true
				s.maxVersion = max(s.maxVersion, h.Version)
				if h.Meta != nil {
					s.rep.Meta = h.Meta
				}
			}
		case kindRecord:
			f.records++
			s.keep(path, lineNo, text)
		}
	}
	dropped := false // the line before was dropped
	for i := 0; i < len(lines); i++ {
		lineNo, line := i+1, lines[i]
		_, _, _, err := checkLine(line, sums, len(sums))
		if err == nil {
			if _, _, _, next := checkLine(line, sums, 1); next != nil && !dropped {
				// It chains from a line further back: lines between were
				// taken out, and what they held is lost.
				s.drop("%s:%d: lines are missing before it: it follows an earlier line", path, lineNo)
				s.lost(nil)
			}
			take(lineNo, line)
			dropped = false
			continue
		}
		if fixed, n, at, ok := correctLine(lines[i:min(i+2, len(lines))], sums); ok {
			s.rep.Corrected = append(s.rep.Corrected, fmt.Sprintf("%s:%d: %s", path, lineNo, at))
			for _, l := range fixed {
				take(lineNo, l)
			}
			i += n - 1
			dropped = false
			continue
		}
		dropped = true
		if line[len(line)-1] != '\n' {
			err = fmt.Errorf("an incomplete last line (%d bytes)", len(line))
		}
		if len(line) <= frameSize || line[len(line)-1] != '\n' {
			s.drop("%s:%d: %v: %s", path, lineNo, err, preview(line))
			f.records++ // most lines are records
			s.lost(line)
			continue
		}
		// The frame is read where it should be, whatever its bytes: the
		// kind, the checksum (if still hex), the text.
		prev := uint32(0)
		if len(sums) > 0 {
			prev = sums[len(sums)-1]
		}
		kind, text := line[0], line[frameSize:]
		if fixed, ok := vouched(prev, kind, text, lines[i+1:]); ok {
			// The next line chains from the checksum this line's text
			// gives: the text is as written, and only its frame (its
			// checksum, its kind) was damaged.
			s.rep.Corrected = append(s.rep.Corrected, fmt.Sprintf("%s:%d: its frame was damaged, and the next line vouches for its text", path, lineNo))
			take(lineNo, fixed)
			dropped = false
			continue
		}
		s.drop("%s:%d: %v: %s", path, lineNo, err, preview(line))
		sums = append(sums, lineChecksum(prev, kind, text[:len(text)-1]))
		if sum, err := strconv.ParseUint(string(line[2:frameSize-1]), 16, 32); err == nil {
			sums = append(sums, uint32(sum))
		}
		if kind != kindHeader && kind != kindTrailer {
			f.records++
			s.lost(text)
		}
	}
	return f
}

// keep hands a record's text to the owner, or drops it with why.
func (s *salvager[R]) keep(path string, lineNo int, text []byte) {
	r, err := s.parse(text)
	if err == nil {
		err = s.apply(r)
	}
	if err != nil {
		s.drop("%s:%d: %v: %s", path, lineNo, err, preview(text))
		s.lost(text)
	}
}

// unframed hands on the lines of a file of the earlier format, which have
// no checksum to find damage by: a line that does not parse is dropped.
func (s *salvager[R]) unframed(path string, data []byte) salvagedFile {
	var f salvagedFile
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		lineNo := i + 1
		switch {
		case len(line) == 0:
		case line[len(line)-1] != '\n':
			s.drop("%s:%d: an incomplete last line (%d bytes)", path, lineNo, len(line))
			f.records++
			s.lost(line)
		case lineNo == 1:
			if strictjson.Decode(line, &f.header) == nil {
				f.haveHeader = true
				if f.header.Meta != nil {
					s.rep.Meta = f.header.Meta
				}
			}
		default:
			f.records++
			s.keep(path, lineNo, line)
		}
	}
	return f
}

// h0 is the format a header's text names, so that parseHeader checks the
// header against itself: a repair reads snapshots and journals alike.
func h0(text []byte) string {
	var h struct {
		Format string `json:"format"`
	}
	strictjson.Decode(text, &h)
	return h.Format
}

// vouched reports whether the next of rest, the lines after a damaged one
// whose text is text, chains from the checksum that text gives after prev,
// as the kind it says or another: then the damaged line's text is as it
// was written, and fixed is the line whole again.
func vouched(prev uint32, kind byte, text []byte, rest [][]byte) (fixed []byte, ok bool) {
	if len(rest) == 0 {
		return nil, false
	}
	for _, k := range []byte{kind, kindRecord, kindHeader, kindTrailer} {
		if _, _, _, err := readFramed(rest[0], lineChecksum(prev, k, text[:len(text)-1])); err == nil {
			fixed, _ = appendFramed(nil, prev, k, text)
			return fixed, true
		}
	}
	return nil, false
}

// checkLine checks a whole line that follows one of the last n of sums
// (none: the line is a first line, chaining from nothing), the nearest
// first, and returns its parts.
func checkLine(line []byte, sums []uint32, n int) (kind byte, text []byte, sum uint32, err error) {
	if len(sums) == 0 {
		return readFramed(line, 0)
	}
	if line[len(line)-1] != '\n' {
		return 0, nil, 0, errors.New("an incomplete line")
	}
	for i := len(sums) - 1; i >= max(0, len(sums)-n, len(sums)-64); i-- { // a few lines back: enough for a line or two taken out
		if kind, text, sum, err = readFramed(line, sums[i]); !errors.Is(err, errChecksum) {
			return kind, text, sum, err
		}
	}
	return kind, text, sum, err
}

// correctLine looks for the one correction that makes lines[0] check out
// after sums, as the damage a bit flip or a bad sector leaves in a line:
//
//   - one bit of it flipped;
//   - the newline that ended a line damaged into another byte, which joined
//     two lines into lines[0]: it is parted again where a line's frame
//     starts;
//   - a byte of it damaged into a newline, which split it into lines[0]
//     and lines[1]: they are joined again.
//
// It returns the line or lines the correction gives back, how many of
// lines they replace, and what it corrected; ok only when exactly one
// correction makes them check out (a correction that checks out by chance
// has a chance in 2^32 a try). A line's text is searched in time linear in
// its length (flipDeltas), not by checking each of its bits in turn.
func correctLine(lines [][]byte, sums []uint32) (fixed [][]byte, n int, at string, ok bool) {
	found := map[string]bool{}
	try := func(c []byte, used int, what func() string) {
		pieces, ok := chainPieces(c, sums)
		if !ok || found[string(c)] {
			return
		}
		found[string(c)] = true
		fixed, n, at = nil, used, what()
		for _, p := range pieces {
			fixed = append(fixed, bytes.Clone(p)) // c changes on
		}
	}
	line := lines[0]
	if len(line) > maxCorrectedLine {
		return nil, 0, "", false
	}
	c := bytes.Clone(line)
	flip := func(i, bit int) {
		c[i] ^= 1 << bit
		if c[len(c)-1] == '\n' {
			try(c, 1, func() string { return fmt.Sprintf("bit %d of byte %d was flipped", bit, i+1) })
		}
		c[i] ^= 1 << bit
	}
	// A bit of the frame, or of the last byte: each tried.
	for i := range min(frameSize, len(c)) {
		for bit := range 8 {
			flip(i, bit)
		}
	}
	for bit := range 8 {
		flip(len(c)-1, bit)
	}
	// A bit of the text: the one whose flip changes the checksum the text
	// gives by what the line's own checksum says it should be.
	if kind, _, stated, err := splitFramed(line); err == nil {
		body := line[frameSize : len(line)-1]
		for _, prev := range lastSums(sums) {
			target := lineChecksum(prev, kind, body) ^ stated
			flipDeltas(body, func(i int, d *[8]uint32) {
				for bit := range 8 {
					if d[bit] == target && body[i]^1<<bit != '\n' {
						flip(frameSize+i, bit)
					}
				}
			})
		}
	}
	for i := frameSize; i < len(c)-frameSize-1; i++ {
		if next := c[i+1:]; next[1] == ' ' && next[frameSize-1] == ' ' && c[i] != '\n' {
			was := c[i]
			c[i] = '\n'
			try(c, 1, func() string {
				return fmt.Sprintf("byte %d, the newline between two lines, was damaged into %q", i+1, was)
			})
			c[i] = was
		}
	}
	// lines[0] and lines[1] one line, their newline another byte: the
	// byte whose checksum the frame says.
	if len(lines) > 1 && line[len(line)-1] == '\n' && len(line)+len(lines[1]) <= maxCorrectedLine {
		joined := slices.Concat(line, lines[1])
		joint := len(line) - 1
		if kind, _, stated, err := splitFramed(joined); err == nil {
			body := joined[frameSize : len(joined)-1]
			for _, prev := range lastSums(sums) {
				target := lineChecksum(prev, kind, body) ^ stated // body holds '\n' at the joint
				flipDeltas(body, func(i int, d *[8]uint32) {
					if i != joint-frameSize {
						return
					}
					for v := range 256 {
						var delta uint32
						for bit := range 8 {
							if (byte(v)^'\n')>>bit&1 == 1 {
								delta ^= d[bit]
							}
						}
						if v != '\n' && delta == target {
							joined[joint] = byte(v)
							try(joined, 2, func() string {
								return fmt.Sprintf("byte %d had been damaged into a newline, which split the line in two", len(line))
							})
							joined[joint] = '\n'
						}
					}
				})
			}
		}
	}
	if len(found) != 1 {
		return nil, 0, "", false
	}
	return fixed, n, at, true
}

// lastSums are the checksums a corrected line may follow: the last two of
// sums (in case the line before was damaged: its own checksum, or its
// text's), or the start of a file.
func lastSums(sums []uint32) []uint32 {
	if len(sums) == 0 {
		return []uint32{0}
	}
	return sums[max(0, len(sums)-2):]
}

// flipDeltas calls visit with each byte of text, from its end, and what
// flipping each of its bits changes a CRC-32C of a message ending with
// text by. CRC is linear: the change is that of the bit alone followed by
// as many zero bytes as follow it, whatever else the message holds, so it
// is found for every byte in one walk back.
func flipDeltas(text []byte, visit func(i int, d *[8]uint32)) {
	var d [8]uint32
	for bit := range 8 {
		d[bit] = castagnoli[1<<bit] // the bit, in the last byte
	}
	for i := len(text) - 1; i >= 0; i-- {
		visit(i, &d)
		for bit := range 8 {
			d[bit] = castagnoli[byte(d[bit])] ^ d[bit]>>8 // a zero byte more after it
		}
	}
}

// chainPieces splits c into its lines and reports whether they check out
// in turn, the first after the last two of sums (in case the line before
// was damaged: its own checksum, or its text's).
func chainPieces(c []byte, sums []uint32) ([][]byte, bool) {
	var pieces [][]byte
	for rest := c; len(rest) > 0; {
		end := bytes.IndexByte(rest, '\n')
		if end < 0 {
			return nil, false
		}
		piece := rest[:end+1]
		_, _, sum, err := checkLine(piece, sums, 2)
		if err != nil {
			return nil, false
		}
		pieces = append(pieces, piece)
		sums = []uint32{sum}
		rest = rest[end+1:]
	}
	return pieces, len(pieces) > 0
}

// preview is the start of a line, for saying which one a repair drops.
func preview(line []byte) string {
	line = bytes.TrimSuffix(line, []byte("\n"))
	if len(line) > 120 {
		return string(line[:120]) + "…"
	}
	return string(line)
}
