package main

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
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
// The checksum is the CRC-32C (Castagnoli, as etcd's WAL uses) of the kind
// and the text, in lower-case hex. A trailer counts the file's r lines and
// chains their checksums, so a file cut at a line boundary, or with a line
// missing, repeated or moved, does not pass as whole.
//
// Version 1 files, written before 2026-12, have a plain JSON header and
// plain lines with no checksum, and no trailer; they are still read, and
// never written.

// The kinds of line.
const (
	kindHeader  = 'h'
	kindRecord  = 'r'
	kindTrailer = 't'
)

// frameSize is the kind, the checksum and the spaces around it.
const frameSize = len("r 01234567 ")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// lineChecksum is the checksum of a line of the given kind and text (the
// text without its newline).
func lineChecksum(kind byte, text []byte) uint32 {
	// The kind's byte goes through the table by hand: given to crc32.Update,
	// it would take an allocation, once for each of a million lines.
	crc := ^uint32(0)
	crc = castagnoli[byte(crc)^kind] ^ crc>>8
	return crc32.Update(^crc, castagnoli, text)
}

// appendFramed appends a line of the given kind holding text, which ends
// with its newline, and returns the line's checksum.
func appendFramed(buf []byte, kind byte, text []byte) ([]byte, uint32) {
	sum := lineChecksum(kind, text[:len(text)-1])
	var raw [4]byte
	var hexSum [8]byte
	binary.BigEndian.PutUint32(raw[:], sum)
	hex.Encode(hexSum[:], raw[:])
	buf = append(buf, kind, ' ')
	buf = append(buf, hexSum[:]...)
	buf = append(buf, ' ')
	return append(buf, text...), sum
}

// errChecksum is a line whose text does not match its checksum: the bytes
// on disk were changed after they were written.
var errChecksum = errors.New("checksum mismatch: the line changed on disk after it was written")

// readFramed reads a whole line (with its newline) and returns its kind,
// its text (with the newline, as the owner wrote it) and its checksum.
func readFramed(line []byte) (kind byte, text []byte, sum uint32, err error) {
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
	if lineChecksum(kind, text[:len(text)-1]) != sum {
		return 0, nil, 0, errChecksum
	}
	switch kind {
	case kindHeader, kindRecord, kindTrailer:
		return kind, text, sum, nil
	}
	return 0, nil, 0, fmt.Errorf("unknown kind of line %q", kind)
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
	CRC32C string `json:"crc32c"` // their checksums, chained (lineTally)
}

// lineTally counts a file's r lines and chains their checksums, as its
// trailer records them.
type lineTally struct {
	lines int64
	chain uint32
}

func (t *lineTally) add(sum uint32) {
	// crc32.Update(t.chain, castagnoli, sum's 4 bytes, big-endian), by the
	// table, for the reason lineChecksum gives.
	crc := ^t.chain
	for shift := 24; shift >= 0; shift -= 8 {
		crc = castagnoli[byte(crc)^byte(sum>>shift)] ^ crc>>8
	}
	t.lines++
	t.chain = ^crc
}

func (t lineTally) trailer() fileTrailer {
	return fileTrailer{Lines: t.lines, CRC32C: hex.EncodeToString(binary.BigEndian.AppendUint32(nil, t.chain))}
}

// encodeHeader is h's line.
func encodeHeader(h fileHeader) []byte {
	text, _ := json.Marshal(h) // Cannot fail: plain data, and Meta is JSON.
	line, _ := appendFramed(nil, kindHeader, append(text, '\n'))
	return line
}

// encodeTrailer is the trailer line of a file with tally.
func encodeTrailer(tally lineTally) []byte {
	text, _ := json.Marshal(tally.trailer()) // Cannot fail: plain data.
	line, _ := appendFramed(nil, kindTrailer, append(text, '\n'))
	return line
}

// parseHeader reads the first line of a file of the given format, of
// either version.
func parseHeader(line []byte, format string) (fileHeader, error) {
	var h fileHeader
	text, framed := line, len(line) > 0 && line[0] != '{'
	if framed {
		kind, t, _, err := readFramed(line)
		if err != nil {
			return h, err
		}
		if kind != kindHeader {
			return h, errors.New("the first line is not a header")
		}
		text = t
	}
	if err := decodeStrict(text, &h); err != nil || h.Format != format {
		return h, fmt.Errorf("not a wxlogin %s file", format)
	}
	switch {
	case !framed && h.Version == 1:
	case framed && h.Version == 2 && h.Store != "":
	default:
		return h, fmt.Errorf("%s version %d is not supported by this wxlogin", format, h.Version)
	}
	return h, nil
}

// checkTrailer checks that a trailer's text matches the lines counted.
func checkTrailer(text []byte, tally lineTally) error {
	var t fileTrailer
	if err := decodeStrict(text, &t); err != nil {
		return fmt.Errorf("not a trailer: %v", err)
	}
	if t != tally.trailer() {
		return fmt.Errorf("the trailer records %d lines (checksum %s); the file holds %d before it (checksum %s)",
			t.Lines, t.CRC32C, tally.lines, tally.trailer().CRC32C)
	}
	return nil
}
