// Package tools is the tools that look after a store, in the same binary:
// wxlogin check, export, backup, restore and repair, and the moves to and
// from Redis (move.go). None of them writes to a store a server is running
// on: check, export and repair take the data directory's lock, and a
// backup is taken by the server itself, on its admin address.
// They read and write the user store only through its door for them
// (internal/users: users.Inspect, users.Store.Lines, users.Create,
// users.Salvage), never its lock or its maps.
package tools

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
	"wxlogin/internal/config"
	"wxlogin/internal/datadir"
	"wxlogin/internal/durable"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/users"
)

// toolNames are the tools, as the first argument names them.
var toolNames = []string{"check", "export", "backup", "restore", "repair", "to-redis", "from-redis"}

// Run runs the tool args[0] names, with its flags after it.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wxlogin "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := config.NewFlags(fs, getenv)
	var dir, from, to, backup, redisURL, durability string
	var drop config.OptionalBool
	var timeout time.Duration
	var unused int64
	switch args[0] {
	case "check":
		e.String(&dir, "data", "WXLOGIN_DATA", "./data", "the data directory to check; no server may be running on it")
		fs.StringVar(&backup, "backup", "", "check this backup file instead of a data directory")
	case "export":
		e.String(&dir, "data", "WXLOGIN_DATA", "./data", "the data directory to export; no server may be running on it")
	case "backup":
		fs.StringVar(&from, "from", "", "the -admin-addr of the running wxlogin, as a URL: http://127.0.0.1:6060")
		fs.StringVar(&to, "to", "", "the file to write the backup to (replaced whole, once the backup checks out)")
		fs.DurationVar(&timeout, "timeout", DefaultBackupTimeout, "the most the whole backup may take, from the request to the file in place")
	case "restore":
		fs.StringVar(&from, "from", "", "the backup file to restore")
		e.String(&dir, "data", "WXLOGIN_DATA", "./data", "the data directory to restore into: new, or empty")
		fs.Int64Var(&unused, "keep-unused", defaultKeepUnused, "how many ids (and events' seqs) past the backup's to keep unused, as erased ids: the server may have given them after the backup (0 if it stopped when the backup was taken)")
	case "to-redis", "from-redis":
		e.String(&dir, "data", "WXLOGIN_DATA", "./data", "the data directory to move from (to-redis: no server may be running on it), or into (from-redis: new, or empty)")
		e.String(&redisURL, "redis", "WXLOGIN_REDIS", "", "the Redis to move into (to-redis: it must hold no users) or from (from-redis: stop its wxlogins first), as for wxlogin -redis")
		e.String(&durability, "redis-durability", "WXLOGIN_REDIS_DURABILITY", redisstore.Fsync, "as for wxlogin -redis-durability")
	case "repair":
		e.String(&dir, "data", "WXLOGIN_DATA", "./data", "the data directory to repair; no server may be running on it")
		fs.Var(&drop, "drop", "drop what the repair lists, keeping the damaged files aside in the data directory (without it, nothing changes)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := e.Err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("wxlogin %s: unexpected argument %q (settings are flags; see -h)", args[0], fs.Arg(0))
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	switch args[0] {
	case "check":
		if backup != "" {
			return checkBackup(backup, out)
		}
		return checkDataDir(dir, out)
	case "export":
		return exportDataDir(dir, out)
	case "backup":
		return takeBackup(ctx, from, to, timeout, out)
	case "restore":
		return restoreBackup(from, dir, unused, out)
	case "to-redis", "from-redis":
		if redisURL == "" {
			return fmt.Errorf("wxlogin %s: -redis (or WXLOGIN_REDIS) names the Redis", args[0])
		}
		cfg, err := config.ParseRedis(redisURL, e.OnCommandLine("redis"), getenv("WXLOGIN_REDIS_PASSWORD_FILE"))
		if err != nil {
			return fmt.Errorf("wxlogin %s: -redis / WXLOGIN_REDIS: %w", args[0], err)
		}
		if args[0] == "to-redis" {
			return moveToRedis(ctx, dir, cfg, durability, out)
		}
		return moveFromRedis(ctx, dir, cfg, out)
	default:
		return repairDataDir(dir, drop.Value, out)
	}
}

// checkDataDir verifies a data directory as a start-up would, with every
// check, and reports what it holds; it changes nothing.
func checkDataDir(dir string, out io.Writer) error {
	d, err := datadir.Inspect(dir)
	if err != nil {
		return fmt.Errorf("wxlogin check: %w", err)
	}
	defer d.Release()
	s, notes, err := users.Inspect(dir)
	if err != nil {
		fmt.Fprintf(out, "wxlogin check: %s is damaged:\n  %v\nwxlogin repair -data %s lists what a repair would drop.\n", dir, err, dir)
		return fmt.Errorf("wxlogin check: %s is damaged", dir)
	}
	defer s.Close()
	describe(out, dir, s)
	for _, n := range notes {
		fmt.Fprintf(out, "  a start-up will %s\n", n)
	}
	fmt.Fprintln(out, "ok: every line checks out")
	return nil
}

// checkBackup verifies a backup file.
func checkBackup(path string, out io.Writer) error {
	s, err := users.ReadBackup(path)
	if err != nil {
		return fmt.Errorf("wxlogin check: %w", err)
	}
	describe(out, path, s)
	fmt.Fprintln(out, "ok: every line checks out")
	return nil
}

// describe says what a store holds.
func describe(out io.Writer, where string, s *users.Store) {
	m, _ := s.Meta()
	users, persons, claims := s.Census()
	mode := "of a mode not recorded (files of the earlier format)"
	if m.Mode != "" {
		mode = "created in " + m.Mode + " mode, for " + strings.Join(m.AppIDs, ", ")
	}
	fmt.Fprintf(out, "%s: %d users (%d persons) and %d claims, %s\n", where, users, persons, claims, mode)
}

// exportDataDir writes the users (an erased one as its erasure line), then
// the claims, then what account deletions kept, of a data directory to out
// as JSON lines, exactly as the store keeps them (users.Store.Lines).
func exportDataDir(dir string, out io.Writer) error {
	d, err := datadir.Inspect(dir)
	if err != nil {
		return fmt.Errorf("wxlogin export: %w", err)
	}
	defer d.Release()
	s, _, err := users.Inspect(dir)
	if err != nil {
		return fmt.Errorf("wxlogin export: %w (wxlogin check says more)", err)
	}
	defer s.Close()
	for line := range s.Lines() {
		if _, err := out.Write(line); err != nil {
			return fmt.Errorf("wxlogin export: %w", err)
		}
	}
	return nil
}

// DefaultBackupTimeout bounds a whole backup, from the request to the file
// in place, unless -timeout says otherwise: a server that stops sending
// halfway must not hold the nightly unit for ever, since systemd starts
// no other run of a oneshot still running (deploy/wxlogin-backup.service
// gives it longer, in TimeoutStartSec).
const DefaultBackupTimeout = 10 * time.Minute

// BackupTempPrefix starts the name of the file a backup is written to
// before it checks out, next to the backup:
// .wxlogin-backup-<name>.tmp<random>. It holds every user's data, so one
// that a killed run left behind is removed by the next run into the same
// directory (removeKilledBackups); the prefix is the backup's own, so that
// nothing else there is touched.
const BackupTempPrefix = ".wxlogin-backup-"

// takeBackup fetches a backup from a running wxlogin's admin address and
// writes it to path once it checks out whole, all within timeout. First it
// removes what killed backups left next to path.
func takeBackup(ctx context.Context, from, path string, timeout time.Duration, out io.Writer) error {
	if from == "" || path == "" {
		return errors.New("wxlogin backup: -from (the server's -admin-addr, as http://127.0.0.1:6060) and -to (a file) are needed")
	}
	if timeout <= 0 {
		return errors.New("wxlogin backup: -timeout: must be positive")
	}
	removed, err := removeKilledBackups(filepath.Dir(path))
	for _, name := range removed {
		fmt.Fprintf(out, "removed %s, left by a backup that did not finish\n", name)
	}
	if err != nil {
		return fmt.Errorf("wxlogin backup: removing what killed backups left: %w", err)
	}
	// One deadline for the request, the answer and its whole body: a
	// server that sends its headers and then stalls is cut off too.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(from, "/")+"/backup", nil)
	if err != nil {
		return fmt.Errorf("wxlogin backup: -from: %w", err)
	}
	s, err := fetchBackup(req, path)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("wxlogin backup: %s sent no whole backup within -timeout %v: %w", from, timeout, err)
	}
	if err != nil {
		return fmt.Errorf("wxlogin backup: %w", err)
	}
	describe(out, path, s)
	return nil
}

// fetchBackup sends req, for a backup, and writes the answer to path once
// it checks out whole.
func fetchBackup(req *http.Request, path string) (*users.Store, error) {
	client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: time.Minute}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s answered %s: %s", req.URL.Redacted(), resp.Status, strings.TrimSpace(string(body)))
	}
	var s *users.Store
	err = writeBackupFile(path, func(tmp *os.File) error {
		if _, err := io.Copy(tmp, resp.Body); err != nil {
			return err
		}
		var err error
		s, err = users.ReadBackup(tmp.Name()) // checked before it replaces anything
		return err
	})
	return s, err
}

// writeBackupFile puts what write writes in a new temporary file next to
// path, and once it is written whole and synced, renames it to path; on
// failure it removes it. The temporary file is locked while it is open,
// and removed or renamed before it is closed, so that another run into the
// same directory meanwhile leaves it alone (removeKilledBackups).
func writeBackupFile(path string, write func(tmp *os.File) error) error {
	tmp, err := createBackupTemp(path)
	if err != nil {
		return err
	}
	defer tmp.Close()           // releases the lock, once the name is gone
	defer os.Remove(tmp.Name()) // fails harmlessly once the rename has happened
	if err := write(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(path))
}

// createBackupTemp creates a backup's temporary file next to path and
// locks it. A run removing killed backups may have opened it before the
// lock, and removed it: then another is made.
func createBackupTemp(path string) (*os.File, error) {
	for range 10 {
		f, err := os.CreateTemp(filepath.Dir(path), BackupTempPrefix+filepath.Base(path)+".tmp*")
		if err != nil {
			return nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			atPath, pathErr := os.Stat(f.Name())
			opened, openErr := f.Stat()
			if pathErr == nil && openErr == nil && os.SameFile(atPath, opened) {
				return f, nil
			}
		}
		f.Close() // Being removed by another run, or removed already.
	}
	return nil, fmt.Errorf("no temporary file next to %s stayed: another run keeps removing them", path)
}

// removeKilledBackups removes the temporary files of backups into dir
// that are not being written, those a run killed before its rename left
// behind, and returns their names. A file is being written while its run
// holds its lock, which the kernel drops with the process.
func removeKilledBackups(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, BackupTempPrefix) || !strings.Contains(name, ".tmp") {
			continue
		}
		path := filepath.Join(dir, name)
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // Renamed or removed by its run meanwhile.
		}
		if err != nil {
			return removed, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // A backup is being written to it now.
			continue
		}
		err = os.Remove(path)
		f.Close()
		switch {
		case err == nil:
			removed = append(removed, name)
		case !errors.Is(err, fs.ErrNotExist):
			return removed, err
		}
	}
	return removed, nil
}

// defaultKeepUnused is how many ids a restore keeps unused past the
// backup's by default, as a repair keeps past what it cannot count.
const defaultKeepUnused = 1000

// maxKeepUnused bounds -keep-unused: each id kept unused is a line of the
// store, in memory and on disk, and a typo must not fill either.
const maxKeepUnused = 10_000_000

// restoreBackup puts a backup into a new or empty data directory, and
// checks the result as a start-up would, before it is in place: a restore
// that fails or is killed leaves the directory as it was (datadir.Create),
// never an empty store that would give the backup's ids again. It keeps the
// next unused ids unused, as erased ids: the server backed up may have
// given them after the backup, to users other services may still name.
func restoreBackup(from, dir string, unused int64, out io.Writer) error {
	if from == "" {
		return errors.New("wxlogin restore: -from (a backup file) is needed")
	}
	if unused < 0 || unused > maxKeepUnused {
		return fmt.Errorf("wxlogin restore: -keep-unused is %d; want 0 to %d", unused, maxKeepUnused)
	}
	s, err := users.ReadBackup(from)
	if err != nil {
		return fmt.Errorf("wxlogin restore: %w", err)
	}
	if first, last := s.KeepIDsUnused(unused, time.Now()); first <= last {
		fmt.Fprintf(out, "keeps ids %d–%d unused (as erased ids): the server may have given them after the backup (-keep-unused)\n", first, last)
	}
	meta, err := s.Meta()
	if err != nil {
		return fmt.Errorf("wxlogin restore: %w", err)
	}
	err = datadir.Create(dir, "restore", func(tmp string) error {
		if err := users.Create(tmp, meta, s.Lines()); err != nil {
			return err
		}
		restored, _, err := users.Inspect(tmp)
		if err != nil {
			return fmt.Errorf("the restored store does not check out: %w", err)
		}
		defer restored.Close()
		describe(out, dir, restored)
		return nil
	})
	if err != nil {
		return fmt.Errorf("wxlogin restore: %w", err)
	}
	return nil
}

// repairDataDir lists what a repair of a damaged data directory would
// correct (a line one flipped bit away from checking out) and drop: every
// other line that does not check out, what contradicts the lines before it
// or cannot stand without a line dropped, and the lines the watermark says
// were cut from the end; and the ids that stay unused. With drop, it keeps
// the rest as a new store and moves the damaged files into a folder of
// their own in dir, for the operator.
func repairDataDir(dir string, drop bool, out io.Writer) error {
	d, err := datadir.Lock(dir, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("wxlogin repair: %w", err)
	}
	defer d.Release()
	s, _, err := users.Inspect(dir)
	if err == nil {
		s.Close()
		fmt.Fprintf(out, "%s checks out: nothing to repair\n", dir)
		return nil
	}
	fmt.Fprintf(out, "%s does not check out:\n  %v\n", dir, err)
	r, err := users.Salvage(dir, time.Now())
	if err != nil {
		return fmt.Errorf("wxlogin repair: %w", err)
	}
	fmt.Fprintf(out, "A repair keeps every line that checks out; it corrects %d and drops %d:\n", len(r.Corrected), len(r.Dropped))
	for _, c := range r.Corrected {
		fmt.Fprintf(out, "  corrects %s\n", c)
	}
	for _, l := range r.Dropped {
		fmt.Fprintf(out, "  drops %s\n", l)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(out, "  %s\n", n)
	}
	describe(out, "what is kept", r.Kept)
	if !drop {
		return errors.New("wxlogin repair: nothing changed; with -drop it corrects and drops what is listed above")
	}

	// The damaged files are kept, linked into a folder of their own, before
	// the store is replaced: a crash during the repair leaves the store as
	// it was, and the copy aside either way.
	aside := filepath.Join(dir, "damaged-"+time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Mkdir(aside, 0o700); err != nil {
		return fmt.Errorf("wxlogin repair: %w", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "users.*"))
	for _, f := range files {
		if err := os.Link(f, filepath.Join(aside, filepath.Base(f))); err != nil {
			return fmt.Errorf("wxlogin repair: keeping %s: %w", f, err)
		}
	}
	if err := durable.SyncDir(aside); err != nil {
		return fmt.Errorf("wxlogin repair: %w", err)
	}
	if err := r.Replace(dir); err != nil {
		return fmt.Errorf("wxlogin repair: %w", err)
	}
	if s, _, err := users.Inspect(dir); err != nil {
		return fmt.Errorf("wxlogin repair: the repaired store does not check out: %w", err)
	} else {
		s.Close()
	}
	fmt.Fprintf(out, "repaired: the damaged files are in %s\n", aside)
	return nil
}

// BackupHandler serves GET /backup on the admin address: the user store as
// it is now, in a snapshot's format, every line of it durable before the
// first byte goes out. Logins go on meanwhile. A backup cut short has no
// trailer, so wxlogin backup refuses it.
func BackupHandler(users *users.Store, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := users.WriteFailure(); err != nil {
			http.Error(w, "the user store refuses writes since one failed; back up its files after a restart", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="wxlogin-backup.jsonl"`)
		if err := users.WriteBackup(w); err != nil {
			log.Warn("backup failed", "err", err) // The client sees a backup cut short.
		}
	})
}

// IsTool reports whether name is one of the tools.
func IsTool(name string) bool { return slices.Contains(toolNames, name) }
