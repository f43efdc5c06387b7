package journal

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"wxlogin/internal/strictjson"
)

// This file is the format of the journal's files: how a line is framed
// with its checksum, and the header and trailer lines that bind the files
// of one store together.
//
// Every line of a file (version 2) is its kind, its checksum and its text:
//
//	h 1c291ca3 {"format":"wxlogin-users-journal","version":2,"generation":4,"store":"…","meta":{…}}
//	r 7a1c09f2 {"id":1,"appid":"wx…",…}
//	t 0a9b8c7d {"lines":1203,"crc32c":"5e0f3a1c"}
//
// h is the header, always the first line; r is a line of the owner's; t is
// a trailer, the last line of a file that is complete: every snapshot, and
// every journal but the newest, sealed when writes moved to the next one.
// The checksum is the CRC-32C (Castagnoli, as etcd's WAL uses) of the
// checksum of the line before it (none for the header), the kind and the
// text, in lower-case hex. So each line vouches for the one before it, and
// a line changed, missing, repeated or moved fails the check of the next
// line, if not its own. A trailer counts the file's r lines and repeats the
// checksum of the last, so a file cut at a line boundary does not pass as
// whole. The end of the newest journal has no trailer yet: lines cut off
// there at a line boundary cannot be told from a crash before they were
// written (a crash cuts the end of the newest journal, and nothing else).
//
// The end of the newest journal is vouched for from outside it: the store's
// watermark file (users.watermark) records, after each flush, how many
// lines the newest journal holds and the checksum of the last, so a cut at
// a line boundary of what was acknowledged is found. It is one line,
//
//	w 3e1f0a2b {"store":"…","generation":4,"lines":1203,"crc32c":"5e0f3a1c"}
//
// padded with spaces to a fixed length under 512 bytes and overwritten in
// place: a write of less than a sector is never torn (as PostgreSQL keeps
// pg_control's contents under 512 bytes for the same reason).
//
// Version 3 files, from 2026-12, are version 2's lines with the watermark
// beside them: a store holding a file of version 3 must have one. Version 2
// files (a store with no watermark) and version 1 files, written before
// 2026-12, which have a plain JSON header and plain lines with no checksum
// and no trailer, are still read, and never written: writes go to a new
// journal of version 3.

// The kinds of line.
const (
	kindHeader  = 'h'
	kindRecord  = 'r'
	kindTrailer = 't'
	kindMark    = 'w' // the watermark file's one line
)

// formatVersion is the version of the files the journal writes.
const formatVersion = 3

// frameSize is the kind, the checksum and the spaces around it.
const frameSize = len("r 01234567 ")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// lineChecksum is the checksum of a line of the given kind and text (the
// text without its newline) that follows a line whose checksum is prev.
func lineChecksum(prev uint32, kind byte, text []byte) uint32 {
	// prev's 4 bytes, big-endian, and the kind go through the table by
	// hand: given to crc32.Update, they would take an allocation, once for
	// each of a million lines.
	crc := ^uint32(0)
	for shift := 24; shift >= 0; shift -= 8 {
		crc = castagnoli[byte(crc)^byte(prev>>shift)] ^ crc>>8
	}
	crc = castagnoli[byte(crc)^kind] ^ crc>>8
	return crc32.Update(^crc, castagnoli, text)
}

// appendFramed appends a line of the given kind holding text, which ends
// with its newline, after a line whose checksum is prev, and returns the
// line's checksum.
func appendFramed(buf []byte, prev uint32, kind byte, text []byte) ([]byte, uint32) {
	sum := lineChecksum(prev, kind, text[:len(text)-1])
	var raw [4]byte
	var hexSum [8]byte
	binary.BigEndian.PutUint32(raw[:], sum)
	hex.Encode(hexSum[:], raw[:])
	buf = append(buf, kind, ' ')
	buf = append(buf, hexSum[:]...)
	buf = append(buf, ' ')
	return append(buf, text...), sum
}

// errChecksum is a line whose checksum does not match its text and the line
// before it: the bytes on disk were changed after they were written, or a
// line before it was taken out.
var errChecksum = errors.New("checksum mismatch: the line, or the one before it, changed on disk after it was written, or a line is missing")

// splitFramed reads the parts of a whole line (with its newline): its kind,
// its text (with the newline, as the owner wrote it) and the checksum it
// says it has, without checking that checksum.
func splitFramed(line []byte) (kind byte, text []byte, sum uint32, err error) {
	if len(line) < frameSize+1 || line[1] != ' ' || line[frameSize-1] != ' ' || line[len(line)-1] != '\n' {
		return 0, nil, 0, errors.New("not a line of a wxlogin journal (kind, checksum, text)")
	}
	for _, c := range line[2 : frameSize-1] {
		digit := uint32(c - '0')
		if c >= 'a' {
			digit = uint32(c-'a') + 10
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return 0, nil, 0, errors.New("the checksum is not 8 lower-case hex digits")
		}
		sum = sum<<4 | digit
	}
	kind, text = line[0], line[frameSize:]
	switch kind {
	case kindHeader, kindRecord, kindTrailer, kindMark:
		return kind, text, sum, nil
	}
	return 0, nil, 0, fmt.Errorf("unknown kind of line %q", kind)
}

// readFramed reads a whole line that follows a line whose checksum is
// prev, and checks it.
func readFramed(line []byte, prev uint32) (kind byte, text []byte, sum uint32, err error) {
	kind, text, sum, err = splitFramed(line)
	if err == nil && lineChecksum(prev, kind, text[:len(text)-1]) != sum {
		err = errChecksum
	}
	return kind, text, sum, err
}

// fileHeader is the header of every journal and snapshot.
type fileHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Generation is a journal's own number, or for a snapshot the newest
	// journal generation whose lines it includes.
	Generation int64 `json:"generation"`
	// Store names the store the file belongs to, the same in all its
	// files, so that a file of another store is not taken for one of this
	// one's. Version 1 files have none.
	Store string `json:"store,omitempty"`
	// Meta is the owner's, stored and handed back unread.
	Meta json.RawMessage `json:"meta,omitempty"`
}

// fileTrailer is the last line of a complete file.
type fileTrailer struct {
	Lines  int64  `json:"lines"`  // r lines in the file
	CRC32C string `json:"crc32c"` // the checksum of the last of them (of the header if none)
}

// lineTally is where a file stands: how many r lines it holds, and the
// checksum of its last line, which the next one chains from.
type lineTally struct {
	lines int64
	last  uint32
}

func (t lineTally) trailer() fileTrailer {
	return fileTrailer{Lines: t.lines, CRC32C: hex.EncodeToString(binary.BigEndian.AppendUint32(nil, t.last))}
}

// encodeHeader is h's line, and the tally of a file that holds only it.
func encodeHeader(h fileHeader) ([]byte, lineTally) {
	text, _ := json.Marshal(h) // Cannot fail: plain data, and Meta is JSON.
	line, sum := appendFramed(nil, 0, kindHeader, append(text, '\n'))
	return line, lineTally{last: sum}
}

// encodeTrailer is the trailer line of a file that stands at tally.
func encodeTrailer(tally lineTally) []byte {
	text, _ := json.Marshal(tally.trailer()) // Cannot fail: plain data.
	line, _ := appendFramed(nil, tally.last, kindTrailer, append(text, '\n'))
	return line
}

// parseHeader reads the first line of a file of the given format, of
// either version, and returns the tally of the file so far.
func parseHeader(line []byte, format string) (fileHeader, lineTally, error) {
	var h fileHeader
	var tally lineTally
	text, framed := line, len(line) > 0 && line[0] != '{'
	if framed {
		kind, t, sum, err := readFramed(line, 0)
		if err != nil {
			return h, tally, err
		}
		if kind != kindHeader {
			return h, tally, errors.New("the first line is not a header")
		}
		text, tally.last = t, sum
	}
	if err := strictjson.Decode(text, &h); err != nil || h.Format != format {
		return h, tally, fmt.Errorf("not a wxlogin %s file", format)
	}
	switch {
	case !framed && h.Version == 1:
	case framed && (h.Version == 2 || h.Version == formatVersion) && h.Store != "":
	default:
		return h, tally, fmt.Errorf("%s version %d is not supported by this wxlogin", format, h.Version)
	}
	return h, tally, nil
}

// readTrailer checks a trailer line on its own: its checksum chains from
// the checksum it records, so it needs nothing before it. The journal reads
// a file's last line so, to tell whether the file is sealed.
func readTrailer(line []byte) (fileTrailer, error) {
	var t fileTrailer
	kind, text, _, err := splitFramed(line)
	if err != nil || kind != kindTrailer || strictjson.Decode(text, &t) != nil {
		return t, errors.New("not a trailer")
	}
	var raw [4]byte
	if _, err := hex.Decode(raw[:], []byte(t.CRC32C)); err != nil || len(t.CRC32C) != 8 {
		return t, errors.New("not a trailer")
	}
	if _, _, _, err := readFramed(line, binary.BigEndian.Uint32(raw[:])); err != nil {
		return t, err
	}
	return t, nil
}

// checkTrailer checks that a trailer's text matches the file it ends.
func checkTrailer(text []byte, tally lineTally) error {
	var t fileTrailer
	if err := strictjson.Decode(text, &t); err != nil {
		return fmt.Errorf("not a trailer: %v", err)
	}
	if t != tally.trailer() {
		return fmt.Errorf("the trailer records %d lines ending in checksum %s; the file holds %d before it, ending in %s",
			t.Lines, t.CRC32C, tally.lines, tally.trailer().CRC32C)
	}
	return nil
}

// fileMark is the watermark: where the newest journal of a store stood
// after a flush that was acknowledged.
type fileMark struct {
	Store      string `json:"store"`
	Generation int64  `json:"generation"`
	Lines      int64  `json:"lines"`  // r lines in that journal, acknowledged
	CRC32C     string `json:"crc32c"` // the checksum of the last of them (of its header if none)
}

// markSize is the watermark file's length, fixed so that it is always
// overwritten whole, in one write under a sector.
const markSize = 160

// markFor is the watermark of a store's journal gen standing at tally.
func markFor(store string, gen int64, tally lineTally) fileMark {
	return fileMark{Store: store, Generation: gen, Lines: tally.lines, CRC32C: tally.trailer().CRC32C}
}

// appendMark appends m's line, padded to markSize, to buf. It is written
// by hand, without allocating: it is written after every flush.
func appendMark(buf []byte, m fileMark) []byte {
	var text [markSize - frameSize]byte
	t := append(text[:0], `{"store":`...)
	t = strconv.AppendQuote(t, m.Store)
	t = strconv.AppendInt(append(t, `,"generation":`...), m.Generation, 10)
	t = strconv.AppendInt(append(t, `,"lines":`...), m.Lines, 10)
	t = strconv.AppendQuote(append(t, `,"crc32c":`...), m.CRC32C)
	t = append(t, '}')
	for len(t) < len(text)-1 {
		t = append(t, ' ')
	}
	t = append(t, '\n')
	buf, _ = appendFramed(buf, 0, kindMark, t)
	return buf
}

// parseMark reads the watermark file's content.
func parseMark(data []byte) (fileMark, error) {
	var m fileMark
	if len(data) != markSize {
		return m, fmt.Errorf("%d bytes; a watermark is %d", len(data), markSize)
	}
	kind, text, _, err := readFramed(data, 0)
	if err != nil {
		return m, err
	}
	if kind != kindMark {
		return m, errors.New("not a watermark line")
	}
	if err := strictjson.Decode(text, &m); err != nil {
		return m, fmt.Errorf("not a watermark: %v", err)
	}
	var raw [4]byte
	if _, err := hex.Decode(raw[:], []byte(m.CRC32C)); err != nil || len(m.CRC32C) != 8 || m.Store == "" || m.Generation < 1 || m.Lines < 0 {
		return m, errors.New("not a watermark: a field is out of range")
	}
	return m, nil
}

// sum is the checksum the mark records, as a number.
func (m fileMark) sum() uint32 {
	var raw [4]byte
	hex.Decode(raw[:], []byte(m.CRC32C)) // parseMark checked it
	return binary.BigEndian.Uint32(raw[:])
}
