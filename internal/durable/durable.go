// Package durable writes files so that a crash at any moment leaves either
// what was there or what was written, whole: a file replaced through a
// temporary one (written, fsync'd, renamed), and a directory fsync'd so
// that the names in it last. The journal, the data directory, the token
// file and the backup write through it.
package durable

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with what write produces, so that path always
// holds either the old or the new content in full: write to a temp file in
// the same directory (created 0600), fsync, rename, fsync the directory.
func WriteFile(path string, write func(tmp *os.File) error) error {
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
		err = SyncDir(dir)
	}
	return err
}

// SyncDir makes renames, creations and removals in dir durable.
func SyncDir(dir string) error {
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
