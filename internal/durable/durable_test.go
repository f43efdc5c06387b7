package durable

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// WriteFile replaces a file whole, or leaves it as it was and no temporary
// file beside it when the write fails.
func TestWriteFileReplacesWholeOrNotAtAll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("the disk is full")
	if err := WriteFile(path, func(f *os.File) error {
		f.WriteString("half of the ne")
		return failed
	}); !errors.Is(err, failed) {
		t.Fatalf("WriteFile with a failing write = %v; want its error", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("after a failed write the file holds %q; want it as it was", got)
	}
	if err := WriteFile(path, func(f *os.File) error { _, err := f.WriteString("new"); return err }); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Errorf("the file holds %q; want it replaced", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files; want the one, no temporary file left", len(entries))
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("the file is %v; want 0600, as CreateTemp makes it", info.Mode().Perm())
	}
}
