package journal

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// The checksum of a line is CRC-32C as hash/crc32 computes it, though
// worked out by hand to spare an allocation a line: of the checksum of the
// line before it (big-endian), the kind and the text.
func TestChecksumsAreCRC32C(t *testing.T) {
	tab := crc32.MakeTable(crc32.Castagnoli)
	text := []byte(`{"id":1,"appid":"wx","openid":"o-1"}`)
	prev := uint32(0)
	for k := range 256 {
		want := crc32.Update(crc32.Update(0, tab, binary.BigEndian.AppendUint32(nil, prev)), tab, append([]byte{byte(k)}, text...))
		got := lineChecksum(prev, byte(k), text)
		if got != want {
			t.Fatalf("lineChecksum(%08x, %q, …) = %08x; hash/crc32 says %08x", prev, k, got, want)
		}
		prev = got
	}
	if n := testing.AllocsPerRun(100, func() { prev = lineChecksum(prev, kindRecord, text) }); n != 0 {
		t.Errorf("a line's checksum takes %v allocations; want none", n)
	}
}

// Each line vouches for the one before it: a line taken out, or two
// swapped, fails the check of the line after.
func TestALineChecksOutOnlyAfterItsOwnPredecessor(t *testing.T) {
	header, tally := encodeHeader(fileHeader{Format: "wxlogin-x-journal", Version: 2, Generation: 1, Store: "s"})
	file := bytes.Clone(header)
	var lines [][]byte
	for _, text := range []string{"{\"a\":1}\n", "{\"a\":2}\n", "{\"a\":3}\n"} {
		var line []byte
		line, tally.last = appendFramed(nil, tally.last, kindRecord, []byte(text))
		tally.lines++
		lines = append(lines, line)
		file = append(file, line...)
	}
	_, headerTally, err := parseHeader(header, "wxlogin-x-journal")
	if err != nil {
		t.Fatal(err)
	}
	prev := headerTally.last
	for i, line := range lines {
		_, _, sum, err := readFramed(line, prev)
		if err != nil {
			t.Fatalf("line %d in place: %v", i, err)
		}
		prev = sum
	}
	if _, _, _, err := readFramed(lines[2], headerTally.last); err == nil {
		t.Error("line 3 checks out after the header, with lines 1 and 2 taken out")
	}
	if _, err := readTrailer(encodeTrailer(tally)); err != nil {
		t.Errorf("a trailer read on its own: %v", err)
	}
}

// FuzzReadFramed checks the frame reader: it never panics, it accepts a
// line only as appendFramed would write it after that checksum, and it
// reads back what appendFramed writes.
func FuzzReadFramed(f *testing.F) {
	f.Add([]byte("r 00000000 {}\n"), uint32(0), byte(kindRecord), []byte("{\"id\":1}\n"))
	f.Add([]byte("h 5e0f3a1c {\"format\":\"x\"}\n"), uint32(7), byte(kindHeader), []byte("{}\n"))
	f.Add([]byte("t 0A9B8C7D {\"lines\":1}\n"), uint32(0), byte(kindTrailer), []byte("x\n"))
	f.Add([]byte("w 00000000 {}\n"), uint32(0), byte(kindMark), []byte("{}\n"))
	f.Fuzz(func(t *testing.T, line []byte, prev uint32, kind byte, text []byte) {
		if k, got, _, err := readFramed(line, prev); err == nil {
			if again, _ := appendFramed(nil, prev, k, got); !bytes.Equal(again, line) {
				t.Fatalf("readFramed(%q) accepted a line appendFramed would write as %q", line, again)
			}
		}
		if len(text) == 0 || bytes.IndexByte(text, '\n') != len(text)-1 {
			return // appendFramed takes a text ending in its one newline
		}
		framed, sum := appendFramed(nil, prev, kind, text)
		k, got, readSum, err := readFramed(framed, prev)
		switch kind {
		case kindHeader, kindRecord, kindTrailer, kindMark:
			if err != nil || k != kind || !bytes.Equal(got, text) || readSum != sum {
				t.Fatalf("appendFramed(%q, %q) = %q reads back as %q, %q, %v", kind, text, framed, k, got, err)
			}
		default:
			if err == nil {
				t.Fatalf("a line of kind %q was accepted", kind)
			}
		}
	})
}
