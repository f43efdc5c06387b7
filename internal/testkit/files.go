package testkit

import (
	"os"
	"testing"
)

// WriteFile writes content to path, readable by its owner only, as
// wxlogin writes its files.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// AssertPrivate fails t unless the file at path is 0600, readable by its
// owner only.
func AssertPrivate(t testing.TB, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %04o; want 0600", path, perm)
	}
}
