// Package datadir is the data directory as a whole: one wxlogin at a time
// owns it, what it holds stays private, a crash leaves no temporary file
// behind for long, and a tool that makes one (restore, from-redis) makes it
// whole or not at all.
package datadir

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
	"wxlogin/internal/durable"
)

// LockFileName is the file that holds the pid of the wxlogin that owns the
// data directory; it is locked too, as wxlogins before 2026-12 lock it.
const LockFileName = "wxlogin.lock"

// Dir is a data directory this process owns until Release.
type Dir struct {
	path string
	// dir is the directory itself, locked: its lock cannot be deleted from
	// under a running wxlogin, as a lock file can. nil when inspecting a
	// directory no wxlogin ever owned.
	dir  *os.File
	lock *os.File // the lock file, locked; nil as dir is, or when it is not there to inspect
}

// ErrInUse is a data directory another process owns.
var ErrInUse = errors.New("in use by another wxlogin")

// Open takes the data directory at path for this process: it
// creates it if needed, takes an exclusive lock on the directory itself
// and on its lock file before anything in it is read, makes what it holds
// private, and removes the temporary files a crash left of the files named
// debris (the stores remove their own). A second wxlogin on the same
// directory is refused at once, even after the lock file was deleted. The
// locks are the kernel's (flock): they die with their process, so a
// kill -9 leaves nothing to clean up.
func Open(path string, log *slog.Logger, debris ...string) (*Dir, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		// The new directory's entry is durable before anything in it is.
		if err := durable.SyncDir(filepath.Dir(filepath.Clean(path))); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	}
	d, err := Lock(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(makePrivate(path, log), removeDebris(path, debris, log)); err != nil {
		return nil, errors.Join(err, d.Release())
	}
	return d, nil
}

// Inspect takes the data directory at path to read it, as a check
// or an export does, changing nothing in it: the lock keeps a server from
// writing meanwhile. The lock file is locked only if it is there.
func Inspect(path string) (*Dir, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	d, err := Lock(path, os.O_RDWR)
	if errors.Is(err, fs.ErrPermission) {
		d, err = Lock(path, os.O_RDONLY) // not wxlogin's user: the lock still holds servers off
	}
	return d, err
}

// Lock locks the data directory at path, then opens its lock file
// with flag and locks it too. Without O_CREATE in flag, a lock file that
// is not there is left so: the directory's own lock holds servers off.
func Lock(path string, flag int) (*Dir, error) {
	lockPath := filepath.Join(path, LockFileName)
	dir, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	d := &Dir{path: path, dir: dir}
	if err := flock(dir, path, lockPath); err != nil {
		return nil, errors.Join(err, d.Release())
	}
	d.lock, err = os.OpenFile(lockPath, flag, 0o600)
	switch {
	case errors.Is(err, fs.ErrNotExist) && flag&os.O_CREATE == 0:
		return d, nil
	case err != nil:
		return nil, errors.Join(fmt.Errorf("data directory: %w", err), d.Release())
	}
	if err := flock(d.lock, path, lockPath); err != nil {
		return nil, errors.Join(err, d.Release())
	}
	// The pid says who holds the lock, for the message a second process
	// gives; a holder that opened it read-only leaves the last one's.
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 && d.lock.Truncate(0) == nil {
		d.lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return d, nil
}

// flock takes an exclusive lock on f, part of the data directory at path,
// or says who holds it: the pid in lockPath, if it is there.
func flock(f *os.File, path, lockPath string) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		holder := "another process"
		if pid, readErr := os.ReadFile(lockPath); readErr == nil && len(strings.TrimSpace(string(pid))) > 0 {
			holder = "pid " + strings.TrimSpace(string(pid))
		}
		return fmt.Errorf("data directory %s: %w (%s holds it locked). One wxlogin owns a data directory: "+
			"stop that one first, or give this one a directory of its own (-data / WXLOGIN_DATA)",
			path, ErrInUse, holder)
	}
	if err != nil {
		return fmt.Errorf("data directory: locking %s: %w", f.Name(), err)
	}
	return nil
}

// Release gives the data directory up: closing a file releases its lock.
func (d *Dir) Release() error {
	var errs []error
	for _, f := range []*os.File{d.lock, d.dir} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	d.lock, d.dir = nil, nil
	return errors.Join(errs...)
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

// removeDebris removes the temporary files of the files named debris that
// a crash left (the token file, written at a graceful stop: it holds
// session_keys, and nothing will ever read it).
func removeDebris(path string, debris []string, log *slog.Logger) error {
	for _, name := range debris {
		tmp, err := filepath.Glob(filepath.Join(path, "."+name+".tmp*"))
		if err != nil {
			return err
		}
		for _, p := range tmp {
			log.Warn("data directory: removing a temporary file left by a crash", "file", p)
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
		}
	}
	return nil
}

// NewOrEmpty checks that dir, where a tool is to make a data directory,
// is new or empty: one that holds anything may be another store, or not
// wxlogin's at all.
func NewOrEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty (it holds %s)", dir, entries[0].Name())
	}
	return nil
}

// Create makes the data directory dir, new or empty, whole or not
// at all, as the tools that write a store do (restore, from-redis): fill
// writes the store in a directory of its own beside dir, hidden and locked
// as a data directory, which is renamed into place once fill returns nil.
// rename(2) replaces an empty directory at once, and refuses one something
// was put in meanwhile (os.Rename refuses any directory). So neither a
// start-up nor wxlogin check ever finds half a store at dir, whose ids a
// new store would give again: a fill that fails leaves dir as it was and
// what it wrote removed, and one killed midway leaves it hidden beside
// dir, where the next such tool removes it.
func Create(dir, tool string, fill func(tmp string) error) (err error) {
	if err := NewOrEmpty(dir); err != nil {
		return err
	}
	tmp, err := newFillDir(dir, tool)
	if err != nil {
		return err
	}
	defer func() {
		if tmp != "" {
			err = errors.Join(err, os.RemoveAll(tmp))
		}
	}()
	d, err := Open(tmp, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer d.Release()
	if err := fill(tmp); err != nil {
		return err
	}
	if err := syscall.Rename(tmp, dir); err != nil {
		return fmt.Errorf("moving the new store into %s: %w", dir, err)
	}
	tmp = ""
	return durable.SyncDir(filepath.Dir(filepath.Clean(dir)))
}

// fillDirPattern names the directory a tool fills for dir, beside it,
// hidden: ".<dir's name>.<tool>-<random>".
func fillDirPattern(dir, tool string) string {
	return "." + filepath.Base(filepath.Clean(dir)) + "." + tool + "-"
}

// newFillDir makes the directory tool fills for dir, first removing those
// that runs of it killed midway left: each was locked as a data directory
// (Create), so one whose lock is free is no run's under way. Only
// its owner can read it, as a data directory.
func newFillDir(dir, tool string) (string, error) {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	left, err := filepath.Glob(filepath.Join(parent, fillDirPattern(dir, tool)+"*"))
	if err != nil {
		return "", err
	}
	for _, path := range left {
		d, err := Lock(path, os.O_RDWR)
		if err != nil {
			continue // another run's, under way, or not wxlogin's to remove
		}
		err = os.RemoveAll(path)
		d.Release()
		if err != nil {
			return "", err
		}
	}
	return os.MkdirTemp(parent, fillDirPattern(dir, tool))
}
