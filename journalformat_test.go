package main

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// The checksums are CRC-32C as hash/crc32 computes it, though worked out
// by hand to spare an allocation a line: of the kind and the text, and, in
// a trailer, of each line's checksum in turn, big-endian.
func TestChecksumsAreCRC32C(t *testing.T) {
	tab := crc32.MakeTable(crc32.Castagnoli)
	text := []byte(`{"id":1,"appid":"wx","openid":"o-1"}`)
	var tally lineTally
	var chain uint32
	for k := range 256 {
		want := crc32.Update(crc32.Update(0, tab, []byte{byte(k)}), tab, text)
		got := lineChecksum(byte(k), text)
		if got != want {
			t.Fatalf("lineChecksum(%q, …) = %08x; hash/crc32 says %08x", k, got, want)
		}
		tally.add(got)
		chain = crc32.Update(chain, tab, binary.BigEndian.AppendUint32(nil, got))
	}
	if tally.chain != chain || tally.lines != 256 {
		t.Errorf("tally = %d lines, chain %08x; want 256, %08x", tally.lines, tally.chain, chain)
	}
	if n := testing.AllocsPerRun(100, func() { tally.add(lineChecksum(kindRecord, text)) }); n != 0 {
		t.Errorf("a line's checksum and tally take %v allocations; want none", n)
	}
}

// FuzzReadFramed checks the frame reader: it never panics, it accepts a
// line only if its checksum matches its kind and text, and it reads back
// what appendFramed writes.
func FuzzReadFramed(f *testing.F) {
	f.Add([]byte("r 00000000 {}\n"), byte(kindRecord), []byte("{\"id\":1}\n"))
	f.Add([]byte("h 5e0f3a1c {\"format\":\"x\"}\n"), byte(kindHeader), []byte("{}\n"))
	f.Add([]byte("t 0A9B8C7D {\"lines\":1}\n"), byte(kindTrailer), []byte("x\n"))
	f.Fuzz(func(t *testing.T, line []byte, kind byte, text []byte) {
		if k, got, sum, err := readFramed(line); err == nil {
			if lineChecksum(k, got[:len(got)-1]) != sum || !bytes.Equal(got, line[frameSize:]) {
				t.Fatalf("readFramed(%q) accepted a line whose checksum does not match", line)
			}
		}
		if len(text) == 0 || bytes.IndexByte(text, '\n') != len(text)-1 {
			return // appendFramed takes a text ending in its one newline
		}
		framed, sum := appendFramed(nil, kind, text)
		k, got, readSum, err := readFramed(framed)
		switch kind {
		case kindHeader, kindRecord, kindTrailer:
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
