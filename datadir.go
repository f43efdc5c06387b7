package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// This file is the data directory as a whole: one wxlogin at a time owns
// it, what it holds stays private, and a crash leaves no temporary file
// behind for long.

// lockFileName is the file a wxlogin holds locked while it owns the data
// directory; it holds the owner's pid.
const lockFileName = "wxlogin.lock"

// dataDir is a data directory this process owns until release.
type dataDir struct {
	path string
	lock *os.File // nil when there was nothing to lock (inspecting a directory no wxlogin ever owned)
}

// errDataDirInUse is a data directory another process owns.
var errDataDirInUse = errors.New("in use by another wxlogin")

// openDataDir takes the data directory at path for this process: it
// creates it if needed, takes an exclusive lock on its lock file before
// anything in it is read, makes what it holds private, and removes
// temporary files a crash left (the stores remove their own). A second
// wxlogin on the same directory is refused at once. The lock is the
// kernel's (flock): it dies with its process, so a kill -9 leaves nothing
// to clean up.
func openDataDir(path string, log *slog.Logger) (*dataDir, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		// The new directory's entry is durable before anything in it is.
		if err := syncDir(filepath.Dir(filepath.Clean(path))); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	}
	d, err := lockDataDir(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(makePrivate(path, log), removeDebris(path, log)); err != nil {
		return nil, errors.Join(err, d.release())
	}
	return d, nil
}

// inspectDataDir takes the data directory at path to read it, as a check
// or an export does, changing nothing in it: the lock keeps a server from
// writing meanwhile, and is taken only if a lock file is there.
func inspectDataDir(path string) (*dataDir, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	d, err := lockDataDir(path, os.O_RDWR)
	if errors.Is(err, fs.ErrPermission) {
		d, err = lockDataDir(path, os.O_RDONLY) // not wxlogin's user: the lock still holds servers off
	}
	if errors.Is(err, fs.ErrNotExist) {
		return &dataDir{path: path}, nil // No wxlogin ever started here.
	}
	return d, err
}

// lockDataDir opens the lock file of the data directory at path with flag
// and locks it.
func lockDataDir(path string, flag int) (*dataDir, error) {
	lockPath := filepath.Join(path, lockFileName)
	f, err := os.OpenFile(lockPath, flag, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		holder := "another process"
		if pid, readErr := os.ReadFile(lockPath); readErr == nil && len(strings.TrimSpace(string(pid))) > 0 {
			holder = "pid " + strings.TrimSpace(string(pid))
		}
		f.Close()
		return nil, fmt.Errorf("data directory %s: %w (%s holds %s). One wxlogin owns a data directory: "+
			"stop that one first, or give this one a directory of its own (-data / WXLOGIN_DATA)",
			path, errDataDirInUse, holder, lockPath)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory: locking %s: %w", lockPath, err)
	}
	// The pid says who holds the lock, for the message a second process
	// gives; a holder that opened it read-only leaves the last one's.
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 && f.Truncate(0) == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dataDir{path: path, lock: f}, nil
}

// release gives the data directory up.
func (d *dataDir) release() error {
	if d.lock == nil {
		return nil
	}
	return d.lock.Close() // Closing the file releases the lock.
}

// makePrivate makes the data directory and the files in it readable by
// wxlogin's user alone, as wxlogin creates them, warning of each it
// changes. A copy made with cp, or restored by a tool with a wide umask,
// can leave them open to others: they hold phone numbers and session_keys,
// and fixing them is safe, where refusing to start would stop the service
// over something it can mend.
func makePrivate(path string, log *slog.Logger) error {
	entries, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	check := func(p string, private fs.FileMode) error {
		info, err := os.Stat(p) // only regular files and the directory are checked, so no symlink
		if err != nil || info.Mode().Perm()&^private == 0 {
			return err
		}
		log.Warn("data directory: making a file others could read private", "file", p,
			"mode", fmt.Sprintf("%04o", info.Mode().Perm()), "now", fmt.Sprintf("%04o", private))
		return os.Chmod(p, private)
	}
	errs := []error{check(path, 0o700)}
	for _, e := range entries {
		if e.Type().IsRegular() {
			errs = append(errs, check(filepath.Join(path, e.Name()), 0o600))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	return nil
}

// removeDebris removes the temporary token file a crash during a graceful
// stop left: it holds session_keys, and nothing will ever read it.
func removeDebris(path string, log *slog.Logger) error {
	tmp, err := filepath.Glob(filepath.Join(path, "."+tokenFileName+".tmp*"))
	if err != nil {
		return err
	}
	for _, p := range tmp {
		log.Warn("data directory: removing a temporary token file left by a crash", "file", p)
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	return nil
}
