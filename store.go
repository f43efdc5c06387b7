package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds wxlogin's two stores: the in-memory token store (the
// server's own login state) and the durable user store (one JSON record per
// user of each mini program).

// userRef names one user of one mini program. WeChat's openid is only unique
// within an app, so every lookup is keyed by the pair.
type userRef struct {
	appID  string
	openID string
}

// identity is who a token speaks for. Its strings are the user record's
// own, not copies: a million tokens must not mean a million more openids.
type identity struct {
	AppID  string
	OpenID string
	UserID int64
}

// session is what a valid token resolves to. SessionKey is the newest
// session_key WeChat gave for the user; it never leaves the server.
type session struct {
	identity
	SessionKey string

	hash tokenHash // the key the token is stored under, so it can be revoked
}

// tokenHash is the SHA-256 of a token. Tokens are stored and saved only by
// their hash, so a memory or file dump does not yield tokens anyone can use.
type tokenHash [sha256.Size]byte

func hashToken(token string) tokenHash { return sha256.Sum256([]byte(token)) }

// tokenEntry is one live token: whose it is and when it dies. It is kept
// small, because there is one per phone that logged in; who the user is and
// their session_key are held once per user, in the userSession it points at.
type tokenEntry struct {
	user     *userSession
	issuedAt int64        // Unix nanoseconds
	lastUsed atomic.Int64 // Unix nanoseconds of the last successful lookup
}

// touch records a use at now, keeping the latest of concurrent uses.
func (e *tokenEntry) touch(now time.Time) {
	n := now.UnixNano()
	for {
		old := e.lastUsed.Load()
		if n <= old || e.lastUsed.CompareAndSwap(old, n) {
			return
		}
	}
}

// userSession is a user's login state, shared by all their tokens: who they
// are and their newest session_key, which a new login replaces for every
// token at once (WeChat keeps one valid session_key per user).
type userSession struct {
	who identity
	key atomic.Pointer[sessionKey]
}

// sessionKey is one session_key and when wxlogin got it. It is immutable;
// a new login stores a new one.
type sessionKey struct {
	key      string
	storedAt int64 // Unix nanoseconds
}

// tokenStore holds the login state wxlogin hands to mini programs: random
// tokens, each bound to a user, and each user's newest session_key. It lives
// in memory; save and load carry it across a graceful restart.
type tokenStore struct {
	ttl    time.Duration // a token dies this long after its last successful use
	maxAge time.Duration // and never lives longer than this after it was issued
	now    func() time.Time

	tokens sync.Map // tokenHash → *tokenEntry; read by every authenticated request

	// users is read only by logins, sweeps and saves: a lookup goes from the
	// token straight to its userSession. A plain map takes a fifth of the
	// memory of a sync.Map here, which matters at a million users.
	mu    sync.Mutex // guards users
	users map[int64]*userSession
}

func newTokenStore(ttl, maxAge time.Duration, now func() time.Time) *tokenStore {
	return &tokenStore{ttl: ttl, maxAge: maxAge, now: now, users: map[int64]*userSession{}}
}

// lifetime is how long a fresh token lives if it is not used again.
func (s *tokenStore) lifetime() time.Duration { return min(s.ttl, s.maxAge) }

// expiry is when e dies unless it is used before then, in Unix nanoseconds.
func (s *tokenStore) expiry(e *tokenEntry) int64 {
	return min(e.lastUsed.Load()+int64(s.ttl), e.issuedAt+int64(s.maxAge))
}

// alive reports whether e is still alive at now.
func (s *tokenStore) alive(e *tokenEntry, now time.Time) bool { return now.UnixNano() < s.expiry(e) }

// setSessionKey makes key the session_key of who from now on and returns
// who's userSession.
func (s *tokenStore) setSessionKey(who identity, key *sessionKey) *userSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	us := s.users[who.UserID]
	if us == nil {
		us = &userSession{who: who}
		s.users[who.UserID] = us
	}
	us.key.Store(key)
	return us
}

// userSession returns user id's login state, or nil.
func (s *tokenStore) userSession(id int64) *userSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[id]
}

// issue creates a token for who. The token is 32 bytes from crypto/rand,
// base64url without padding: nothing about it can be guessed from the time or
// the session_key. The session_key becomes the one used for who from now on,
// also by who's other tokens.
func (s *tokenStore) issue(who identity, key string) string {
	var raw [32]byte
	rand.Read(raw[:]) // Never fails: crypto/rand.Read crashes the program rather than return short.
	token := base64.RawURLEncoding.EncodeToString(raw[:])

	now := s.now().UnixNano()
	e := &tokenEntry{user: s.setSessionKey(who, &sessionKey{key: key, storedAt: now}), issuedAt: now}
	e.lastUsed.Store(now)
	s.tokens.Store(hashToken(token), e)
	return token
}

// lookup resolves a token. An expired token is rejected here even if the
// sweeper has not removed it yet; a valid one has its idle lifetime renewed.
func (s *tokenStore) lookup(token string) (session, bool) {
	h := hashToken(token)
	v, ok := s.tokens.Load(h)
	if !ok {
		return session{}, false
	}
	e := v.(*tokenEntry)
	now := s.now()
	if !s.alive(e, now) {
		s.tokens.CompareAndDelete(h, e)
		return session{}, false
	}
	e.touch(now)
	return session{identity: e.user.who, SessionKey: e.user.key.Load().key, hash: h}, true
}

// revoke ends the session's token at once.
func (s *tokenStore) revoke(sess session) { s.tokens.Delete(sess.hash) }

// sweep frees expired tokens and the login state of users no live token
// can need, and reports how many tokens it removed. A session key is stored
// at every issue, so all of a user's tokens were issued no later than their
// newest key was stored, and all are dead once maxAge has passed since then.
func (s *tokenStore) sweep() int {
	now := s.now()
	removed := 0
	s.tokens.Range(func(k, v any) bool {
		if !s.alive(v.(*tokenEntry), now) && s.tokens.CompareAndDelete(k, v) {
			removed++
		}
		return true
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, us := range s.users {
		if now.UnixNano() >= us.key.Load().storedAt+int64(s.maxAge) {
			delete(s.users, id)
		}
	}
	return removed
}

// runSweeper sweeps every interval until ctx ends.
func (s *tokenStore) runSweeper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// The file a graceful shutdown leaves tokens in, and the format its header
// names. It is JSON lines, written and read as a stream: a million tokens
// decoded as one document took 40 seconds and 3 GB. Times are Unix
// nanoseconds, as the store keeps them.
//
//	{"format":"wxlogin-tokens","version":2,"saved_at":"…"}
//	{"user_id":1,"appid":"…","openid":"…","session_key":"…","stored_ns":…}    one per user with a live token, first
//	{"sha256":"…","user_id":1,"issued_ns":…,"last_used_ns":…}    one per live token
const (
	tokenFileName    = "tokens.json"
	tokenFileFormat  = "wxlogin-tokens"
	tokenFileVersion = 2
)

// The lines of the token file. It holds token hashes, never tokens, but it
// does hold session keys: it is written 0600 and removed as soon as it has
// been read back.
type (
	tokenFileHeader struct {
		Format  string    `json:"format"`
		Version int       `json:"version"`
		SavedAt time.Time `json:"saved_at"`
	}
	savedSessionKey struct {
		UserID     int64  `json:"user_id"`
		AppID      string `json:"appid"`  // checked against the user store, so that
		OpenID     string `json:"openid"` // a token never speaks for another user
		SessionKey string `json:"session_key"`
		StoredAt   int64  `json:"stored_ns"`
	}
	savedToken struct {
		SHA256     string `json:"sha256"`
		UserID     int64  `json:"user_id"`
		IssuedAt   int64  `json:"issued_ns"`
		LastUsedAt int64  `json:"last_used_ns"`
	}
)

// savedTokenPrefix starts every token line; a session key line starts with "user_id".
var savedTokenPrefix = []byte(`{"sha256":`)

// save writes the live tokens, and the session keys they use, to path
// atomically, and reports how many tokens it wrote. It runs after the
// server has stopped, so no token is issued while it writes.
func (s *tokenStore) save(path string) (int, error) {
	now := s.now()
	needed := map[*userSession]bool{}
	s.tokens.Range(func(_, v any) bool {
		if e := v.(*tokenEntry); s.alive(e, now) {
			needed[e.user] = true
		}
		return true
	})
	saved := 0
	err := writeFileAtomic(path, func(w io.Writer) error {
		// A write error sticks in bw, and Flush returns it.
		bw := bufio.NewWriterSize(w, 1<<20)
		header, _ := json.Marshal(tokenFileHeader{Format: tokenFileFormat, Version: tokenFileVersion, SavedAt: now.UTC()}) // Cannot fail: plain data.
		bw.Write(append(header, '\n'))
		var line []byte
		for us := range needed {
			k := us.key.Load()
			bw.Write(appendSavedSessionKey(line[:0], savedSessionKey{
				UserID: us.who.UserID, AppID: us.who.AppID, OpenID: us.who.OpenID, SessionKey: k.key, StoredAt: k.storedAt,
			}))
		}
		s.tokens.Range(func(k, v any) bool {
			if e, h := v.(*tokenEntry), k.(tokenHash); s.alive(e, now) {
				line = appendSavedToken(line[:0], savedToken{
					SHA256: base64.RawURLEncoding.EncodeToString(h[:]), UserID: e.user.who.UserID,
					IssuedAt: e.issuedAt, LastUsedAt: e.lastUsed.Load(),
				})
				bw.Write(line)
				saved++
			}
			return true
		})
		return bw.Flush()
	})
	if err != nil {
		return 0, fmt.Errorf("save tokens: %w", err)
	}
	return saved, nil
}

// load reads tokens saved by save, keeps those still alive, and removes the
// file. Removing it matters: a token revoked after this start must not come
// back from the old file after a later crash. userOf gives each token's
// identity from the user store; a token whose user it does not know, or
// knows under another appid or openid, is dropped.
func (s *tokenStore) load(path string, userOf func(id int64) (identity, bool)) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load tokens: %w", err)
	}
	loaded, readErr := s.readTokenFile(bufio.NewReaderSize(f, 1<<16), path, userOf)
	f.Close()
	if readErr != nil && !errors.Is(readErr, errOldTokenFile) {
		return 0, readErr
	}
	s.sweep() // Drops the session keys of users whose tokens all expired while we were down.
	if err := os.Remove(path); err != nil {
		return 0, fmt.Errorf("load tokens: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return 0, fmt.Errorf("load tokens: %w", err)
	}
	return loaded, readErr
}

// errOldTokenFile is a token file written by a wxlogin before version 2. It
// has been removed when load returns it: tokens are login state, not user
// data, a crash loses them too, and each phone simply logs in again.
var errOldTokenFile = errors.New("the token file was written by an older wxlogin; its logins are dropped and users log in again")

// readTokenFile puts the live tokens read from r in s and counts them.
func (s *tokenStore) readTokenFile(r *bufio.Reader, path string, userOf func(id int64) (identity, bool)) (int, error) {
	now, loaded := s.now(), 0
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 && lineNo > 1 {
			return loaded, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%s:%d: not a readable wxlogin token file: %w", path, lineNo, err)
		}
		switch {
		case lineNo == 1:
			if string(line) == "{\n" {
				// Version 1 was one indented JSON document, its format second.
				if next, _ := r.ReadSlice('\n'); string(next) == ` "format": "wxlogin-tokens",`+"\n" {
					return 0, errOldTokenFile
				}
			}
			var h tokenFileHeader
			if err := decodeStrict(line, &h); err != nil {
				return 0, fmt.Errorf("%s:1: not a wxlogin token file: %w", path, err)
			}
			if h.Format != tokenFileFormat || h.Version != tokenFileVersion {
				return 0, fmt.Errorf("%s:1: not a wxlogin token file (format %q version %d)", path, h.Format, h.Version)
			}
		case bytes.HasPrefix(line, savedTokenPrefix):
			t, err := parseSavedToken(line)
			if err != nil {
				return 0, fmt.Errorf("%s:%d: %w", path, lineNo, err)
			}
			raw, err := base64.RawURLEncoding.DecodeString(t.SHA256)
			if err != nil || len(raw) != sha256.Size {
				return 0, fmt.Errorf("%s:%d: token hash %q is not a base64url SHA-256", path, lineNo, t.SHA256)
			}
			e := &tokenEntry{user: s.userSession(t.UserID), issuedAt: t.IssuedAt}
			e.lastUsed.Store(t.LastUsedAt)
			if e.user != nil && s.alive(e, now) {
				s.tokens.Store(tokenHash(raw), e)
				loaded++
			}
		default:
			k, err := parseSavedSessionKey(line)
			if err != nil {
				return 0, fmt.Errorf("%s:%d: %w", path, lineNo, err)
			}
			if who, ok := userOf(k.UserID); ok && who.AppID == k.AppID && who.OpenID == k.OpenID {
				s.setSessionKey(who, &sessionKey{key: k.SessionKey, storedAt: k.StoredAt})
			}
		}
	}
}

// User is one user of one mini program, as stored. The JSON form is the
// on-disk record; handlers build the API view from it.
type User struct {
	ID        int64  `json:"id"`
	AppID     string `json:"appid"`
	OpenID    string `json:"openid"`
	UnionID   string `json:"unionid,omitempty"`
	Nickname  string `json:"nickname,omitempty"`
	AvatarURL string `json:"avatar_url,omitempty"`
	Gender    int    `json:"gender,omitempty"`
	Language  string `json:"language,omitempty"`
	City      string `json:"city,omitempty"`
	Province  string `json:"province,omitempty"`
	Country   string `json:"country,omitempty"`
	// The phone number the user shared with getPhoneNumber (WECHAT.md §3).
	PhoneNumber     string    `json:"phone_number,omitempty"`
	PurePhoneNumber string    `json:"pure_phone_number,omitempty"`
	CountryCode     string    `json:"country_code,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	LastLoginAt     time.Time `json:"last_login_at"`
}

func (u *User) ref() userRef { return userRef{u.AppID, u.OpenID} }

// The user store keeps its records in two kinds of JSON-lines files in the
// data directory, each starting with a header line:
//
//   - users.journal.<generation>.jsonl: every write appends the user's whole
//     record as one line and is fsync'd before the write returns. Writers that
//     arrive while a flush is under way are written together by the next
//     flush, so concurrent logins share one fsync.
//   - users.snapshot.jsonl: all users, written atomically (temp file, fsync,
//     rename, fsync of the directory) when the journal has grown as large as
//     the last snapshot. Its header names the newest journal generation it
//     includes; older journals are then deleted.
//
// Because every line is a whole record, replay is idempotent: start-up loads
// the snapshot, then replays newer journals, the last line of a user winning.
// A crash can only cut the very end of the newest journal, which was never
// acknowledged; start-up truncates that partial line and reports any other
// damage as an error naming the file and line.
const (
	snapshotName    = "users.snapshot.jsonl"
	journalPrefix   = "users.journal."
	journalSuffix   = ".jsonl"
	snapshotFormat  = "wxlogin-users-snapshot"
	journalFormat   = "wxlogin-users-journal"
	minCompactBytes = 8 << 20
	maxRecordBytes  = 256 << 10
)

// fileHeader is the first line of every user file.
type fileHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Generation is a journal's own number, or for a snapshot the newest
	// journal generation whose records it includes.
	Generation int64 `json:"generation"`
}

// errStoreClosed is returned by writes after Close.
var errStoreClosed = errors.New("user store is closed")

// batch is a group of journal lines written with one fsync.
type batch struct {
	buf  []byte
	done bool  // set, with err, by the flush that wrote buf
	err  error // guarded by userStore.flushMu, like done
}

// userStore is the durable store of users. Reads are served from memory;
// every write returns only after its record is fsync'd.
type userStore struct {
	dir string
	now func() time.Time
	log *slog.Logger

	mu      sync.Mutex // guards byRef, byID, byUnion, claims, pending and failed
	byRef   map[userRef]*User
	byID    []*User            // byID[id-1]: ids are assigned densely, in journal order
	byUnion map[string][]int64 // unionid → the ids of the records that share it, ascending
	claims  map[int64][]*claimRecord
	pending *batch // lines appended since the last flush began
	// failed is set when a journal write fails. After a failed fsync the kernel
	// may have dropped the dirty pages, so no later write can be trusted to be
	// durable: every write fails until the process is restarted.
	failed error

	flushMu      sync.Mutex // held by the one goroutine writing a batch; guards the fields below
	journal      *os.File
	journalGen   int64
	journalSize  int64 // bytes in journals newer than the snapshot
	compactAt    int64 // journalSize at which to write a new snapshot
	compacting   bool
	compactionWG sync.WaitGroup // the background snapshot writer, waited for by Close
}

// openUserStore loads the user store in dir, creating dir if needed.
func openUserStore(dir string, now func() time.Time, log *slog.Logger) (*userStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open user store: %w", err)
	}
	s := &userStore{
		dir: dir, now: now, log: log,
		byRef: map[userRef]*User{}, byUnion: map[string][]int64{}, claims: map[int64][]*claimRecord{},
		pending:   &batch{},
		compactAt: minCompactBytes,
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open user store: %w", err)
	}
	var journals []int64
	haveSnapshot := false
	var storedBytes int64 // to size the maps before the replay, not by growing
	for _, e := range entries {
		name := e.Name()
		isJournal := strings.HasPrefix(name, journalPrefix) && strings.HasSuffix(name, journalSuffix)
		if info, err := e.Info(); err == nil && (name == snapshotName || isJournal) {
			storedBytes += info.Size()
		}
		switch {
		case name == snapshotName:
			haveSnapshot = true
		case strings.HasPrefix(name, "."+snapshotName+".tmp"):
			// A snapshot whose writer died before the rename; it was never in use.
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("open user store: %w", err)
			}
		case isJournal:
			gen, err := journalGeneration(name)
			if err != nil || gen < 1 || filepath.Base(s.journalPath(gen)) != name {
				return nil, fmt.Errorf("%s: not a wxlogin journal name", filepath.Join(dir, name))
			}
			journals = append(journals, gen)
		}
	}
	slices.Sort(journals)
	// A record takes about 200 bytes on disk, counting the journal lines a
	// snapshot has not absorbed yet. Growing a map of a million users by
	// doubling cost a sixth of a start-up in rehashing.
	if expected := int(storedBytes / 200); expected > 0 {
		s.byRef = make(map[userRef]*User, expected)
		s.byUnion = make(map[string][]int64, expected)
		s.byID = make([]*User, 0, expected)
	}

	through := int64(0)
	if haveSnapshot {
		h, size, err := s.replay(filepath.Join(dir, snapshotName), snapshotFormat, false)
		if err != nil {
			return nil, err
		}
		through = h.Generation
		s.compactAt = max(minCompactBytes, size)
	}
	for i, gen := range journals {
		path := s.journalPath(gen)
		if gen <= through {
			// Already in the snapshot; a crash came between its rename and this removal.
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("open user store: %w", err)
			}
			continue
		}
		h, size, err := s.replay(path, journalFormat, i == len(journals)-1)
		if err != nil {
			return nil, err
		}
		if h.Generation != gen {
			return nil, fmt.Errorf("%s:1: header says generation %d", path, h.Generation)
		}
		s.journalSize += size
		s.journalGen = gen
	}
	if s.journalGen == 0 {
		s.journalGen = through + 1
		s.journal, err = createJournal(s.journalPath(s.journalGen), s.journalGen)
	} else {
		s.journal, err = os.OpenFile(s.journalPath(s.journalGen), os.O_WRONLY|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open user store: %w", err)
	}
	return s, nil
}

func (s *userStore) journalPath(gen int64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s%06d%s", journalPrefix, gen, journalSuffix))
}

// replay applies the records of one file and returns its header and size.
// With tornTailOK (the newest journal), a last line without its newline is a
// write cut off by a crash, never acknowledged: it is cut off the file and
// logged. Anywhere else an incomplete line is damage, reported as an error.
//
// Reading and parsing lines runs in a goroutine of its own, ahead of the
// applying, which must go in order: on two cores that takes a third off a
// start-up with a million users.
func (s *userStore) replay(path, format string, tornTailOK bool) (fileHeader, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fileHeader{}, 0, fmt.Errorf("open user store: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, maxRecordBytes)
	var h fileHeader
	line, err := r.ReadSlice('\n')
	switch {
	case err == nil:
		if h, err = parseHeader(line, format); err != nil {
			return h, 0, fmt.Errorf("%s:1: %w", path, err)
		}
	case errors.Is(err, io.EOF) && tornTailOK:
		// The process died before the new journal's header was written.
		s.log.Warn("user store: rewriting a journal header cut off by a crash", "file", path, "bytes", len(line))
		if h, err = repairJournalHeader(f); err != nil {
			return h, 0, fmt.Errorf("%s:1: %w", path, err)
		}
		return h, headerSize(h), nil
	default:
		return h, 0, fmt.Errorf("%s:1: %w", path, readLineError(err))
	}

	lines := make(chan []replayLine, 8)
	stop := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() { readLines(r, lines, stop) })
	defer reader.Wait() // before f is closed
	defer close(stop)

	offset := int64(len(line))
	for batch := range lines {
		for _, l := range batch {
			switch {
			case l.readErr == nil && l.parseErr == nil:
				if err := s.applyParsed(l); err != nil {
					return h, 0, fmt.Errorf("%s:%d: %w", path, l.lineNo, err)
				}
				offset += int64(l.size)
			case l.parseErr != nil:
				return h, 0, fmt.Errorf("%s:%d: %w", path, l.lineNo, l.parseErr)
			case errors.Is(l.readErr, io.EOF) && l.size == 0:
				return h, offset, nil
			case errors.Is(l.readErr, io.EOF) && tornTailOK:
				s.log.Warn("user store: dropping an incomplete last line left by a crash; it was never acknowledged",
					"file", path, "line", l.lineNo, "bytes", l.size)
				if err := truncateDurably(f, offset); err != nil {
					return h, 0, fmt.Errorf("%s:%d: %w", path, l.lineNo, err)
				}
				return h, offset, nil
			default:
				return h, 0, fmt.Errorf("%s:%d: %w", path, l.lineNo, readLineError(l.readErr))
			}
		}
	}
	// Unreachable: readLines always ends with a line carrying an error.
	return h, 0, fmt.Errorf("%s: the line reader stopped without saying why", path)
}

// replayLine is one line of a user file after line 1, read and parsed.
type replayLine struct {
	lineNo   int
	size     int
	user     *User
	claim    *claimRecord
	parseErr error
	readErr  error // set on the last line only: io.EOF at the end of the file
}

// readLines reads and parses lines from r and sends them in batches, in
// order, until a read error (io.EOF at the end), which it sends last, or
// until stop is closed.
func readLines(r *bufio.Reader, lines chan<- []replayLine, stop <-chan struct{}) {
	defer close(lines)
	const batchSize = 256
	batch := make([]replayLine, 0, batchSize)
	for lineNo := 2; ; lineNo++ {
		line, err := r.ReadSlice('\n')
		l := replayLine{lineNo: lineNo, size: len(line), readErr: err}
		if err == nil {
			l.user, l.claim, l.parseErr = parseLine(line)
		}
		batch = append(batch, l)
		if len(batch) == batchSize || err != nil || l.parseErr != nil {
			select {
			case lines <- batch:
			case <-stop:
				return
			}
			if err != nil || l.parseErr != nil {
				return
			}
			batch = make([]replayLine, 0, batchSize)
		}
	}
}

// readLineError says what a read error other than a clean end means.
func readLineError(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("incomplete last line")
	case errors.Is(err, bufio.ErrBufferFull):
		return fmt.Errorf("line longer than %d bytes", maxRecordBytes)
	}
	return err
}

// truncateDurably cuts f to size and fsyncs it.
func truncateDurably(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// repairJournalHeader rewrites the header of a journal whose header was cut
// off, taking the generation from the file name.
func repairJournalHeader(f *os.File) (fileHeader, error) {
	gen, err := journalGeneration(f.Name())
	if err != nil {
		return fileHeader{}, err
	}
	h := fileHeader{Format: journalFormat, Version: 1, Generation: gen}
	if err := f.Truncate(0); err != nil {
		return h, err
	}
	if _, err := f.WriteAt(encodeHeader(h), 0); err != nil {
		return h, err
	}
	return h, f.Sync()
}

// journalGeneration reads the generation from a journal's file name.
func journalGeneration(path string) (int64, error) {
	name := filepath.Base(path)
	return strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, journalPrefix), journalSuffix), 10, 64)
}

func encodeHeader(h fileHeader) []byte {
	line, _ := json.Marshal(h) // Cannot fail: fileHeader is plain data.
	return append(line, '\n')
}

func headerSize(h fileHeader) int64 { return int64(len(encodeHeader(h))) }

// parseHeader checks the first line of a user file.
func parseHeader(line []byte, format string) (fileHeader, error) {
	var h fileHeader
	if err := decodeStrict(line, &h); err != nil || h.Format != format {
		return h, fmt.Errorf("not a wxlogin %s file", format)
	}
	if h.Version != 1 {
		return h, fmt.Errorf("%s version %d is not supported by this wxlogin", format, h.Version)
	}
	return h, nil
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// What follows the value must be white space. Checked on the bytes, not
	// with atEOF's Token, which costs a tenth of a start-up's replay.
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) != 0 {
		return errors.New("data after the JSON value")
	}
	return nil
}

// atEOF reports whether dec has nothing left but white space. Decoder.More
// is not enough at the top level: it reports false before a stray } or ].
func atEOF(dec *json.Decoder) bool {
	_, err := dec.Token()
	return err == io.EOF
}

// parseLine parses one replayed line: a user record or a claim.
func parseLine(line []byte) (*User, *claimRecord, error) {
	if bytes.HasPrefix(line, claimLinePrefix) {
		c, err := parseClaimLine(line)
		return nil, c, err
	}
	u, err := parseUserLine(line)
	return u, nil, err
}

// applyParsed puts one parsed line in memory.
func (s *userStore) applyParsed(l replayLine) error {
	if l.claim != nil {
		return s.applyClaim(l.claim)
	}
	return s.apply(l.user)
}

// apply puts a replayed record in memory, enforcing the store's invariants:
// ids are dense and in order, and one (appid, openid) has one id.
func (s *userStore) apply(u *User) error {
	ref := u.ref()
	switch n := int64(len(s.byID)); {
	case u.ID == n+1:
		if other, ok := s.byRef[ref]; ok {
			return fmt.Errorf("user %d duplicates user %d (appid %s, openid %s)", u.ID, other.ID, u.AppID, u.OpenID)
		}
	case u.ID <= n:
		if old := s.byID[u.ID-1]; old.ref() != ref {
			return fmt.Errorf("user %d changes appid or openid", u.ID)
		}
	default:
		return fmt.Errorf("user %d skips ids after %d", u.ID, n)
	}
	s.setLocked(u)
	return nil
}

// applyClaim puts a replayed claim in memory. Its user must be stored
// before it, and one record never claims one name twice. The same claim
// may be replayed twice, like a user record: a snapshot includes the batch
// whose flush started it, and that batch is also in the next journal.
func (s *userStore) applyClaim(c *claimRecord) error {
	if c.UserID > int64(len(s.byID)) {
		return fmt.Errorf("claim %q names user %d, who is not stored before it", c.Name, c.UserID)
	}
	for _, other := range s.claims[c.UserID] {
		switch {
		case other.Name == c.Name && other.At.Equal(c.At):
			return nil
		case other.Name == c.Name:
			return fmt.Errorf("user %d claims %q twice", c.UserID, c.Name)
		}
	}
	s.claims[c.UserID] = append(s.claims[c.UserID], c)
	return nil
}

// setLocked makes u the record of its id, appending a new id, and keeps
// the unionid index in step. s.mu is held, or the store is being opened.
func (s *userStore) setLocked(u *User) {
	if u.ID > int64(len(s.byID)) {
		s.byID = append(s.byID, u)
	} else {
		old := s.byID[u.ID-1]
		if old.UnionID != "" && old.UnionID != u.UnionID {
			ids := slices.DeleteFunc(s.byUnion[old.UnionID], func(id int64) bool { return id == u.ID })
			if len(ids) == 0 {
				delete(s.byUnion, old.UnionID)
			} else {
				s.byUnion[old.UnionID] = ids
			}
		}
		s.byID[u.ID-1] = u
	}
	s.byRef[u.ref()] = u
	if u.UnionID != "" {
		ids := s.byUnion[u.UnionID]
		if i, found := slices.BinarySearch(ids, u.ID); !found {
			s.byUnion[u.UnionID] = slices.Insert(ids, i, u.ID)
		}
	}
}

// login records a login of (appID, openID): it creates the user the first
// time, and otherwise updates last_login_at and a newly learned unionid. It
// returns once the record is durable, and reports whether it was created.
// Exactly one of any number of concurrent first logins creates the user.
func (s *userStore) login(appID, openID, unionID string) (User, bool, error) {
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return User{}, false, s.failed
	}
	now := s.now().UTC().Truncate(time.Second)
	ref := userRef{appID, openID}
	u, found := s.byRef[ref]
	if found {
		updated := *u
		updated.LastLoginAt = now
		if unionID != "" && unionID != u.UnionID {
			updated.UnionID, updated.UpdatedAt = unionID, now
		}
		u = &updated
	} else {
		u = &User{
			ID: int64(len(s.byID)) + 1, AppID: appID, OpenID: openID, UnionID: unionID,
			CreatedAt: now, UpdatedAt: now, LastLoginAt: now,
		}
	}
	b := s.putLocked(u)
	s.mu.Unlock()

	// A concurrent first login that found the record above still waits here,
	// for a batch no earlier than the creating one: batches are written in
	// order, so nobody is told about a user before the user is durable.
	if err := s.wait(b); err != nil {
		return User{}, false, err
	}
	return *u, !found, nil
}

// update applies change to a copy of user id's record and stores it,
// returning once it is durable. A change that leaves the record as it was
// writes nothing. change must only set fields; it runs under the store's lock.
func (s *userStore) update(id int64, change func(u *User)) (User, error) {
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return User{}, s.failed
	}
	if id < 1 || id > int64(len(s.byID)) {
		s.mu.Unlock()
		return User{}, fmt.Errorf("update: no user %d", id)
	}
	old := s.byID[id-1]
	u := *old
	change(&u)
	u.ID, u.AppID, u.OpenID, u.CreatedAt = old.ID, old.AppID, old.OpenID, old.CreatedAt
	if u == *old {
		s.mu.Unlock()
		return u, nil
	}
	u.UpdatedAt = s.now().UTC().Truncate(time.Second)
	b := s.putLocked(&u)
	s.mu.Unlock()
	if err := s.wait(b); err != nil {
		return User{}, err
	}
	return u, nil
}

// putLocked makes u the current record of its user and queues it for the
// next flush, whose batch it returns. s.mu is held; records are never
// changed once put, only replaced.
func (s *userStore) putLocked(u *User) *batch {
	s.setLocked(u)
	b := s.pending
	b.buf = appendRecord(b.buf, u)
	return b
}

// get returns the user with the given id.
func (s *userStore) get(id int64) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > int64(len(s.byID)) {
		return User{}, false
	}
	return *s.byID[id-1], true
}

// identity returns who user id is. Its strings are the record's own: a copy
// of a string shares its bytes.
func (s *userStore) identity(id int64) (identity, bool) {
	u, ok := s.get(id)
	return identity{AppID: u.AppID, OpenID: u.OpenID, UserID: u.ID}, ok
}

// count reports how many users are stored.
func (s *userStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// wait returns once b is durable (or failed). The first waiter to get flushMu
// writes b, and with it every line appended since the previous flush began.
func (s *userStore) wait(b *batch) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if !b.done {
		s.flushLocked(b)
	}
	return b.err
}

// flushLocked writes and fsyncs the pending batch b. Batches are written in
// the order they were started, so b is the pending one. flushMu is held.
// A closed store has failed set, so the journal is open when err is nil.
func (s *userStore) flushLocked(b *batch) {
	rotate := !s.compacting && s.journalSize >= s.compactAt
	s.mu.Lock()
	s.pending = &batch{}
	err := s.failed
	var snapshot *storeSnapshot
	if rotate && err == nil {
		snapshot = s.snapshotLocked()
	}
	s.mu.Unlock()

	if err == nil && snapshot != nil {
		s.startCompaction(snapshot)
	}
	if err == nil {
		err = s.appendToJournal(b.buf)
	}
	if err != nil {
		s.mu.Lock()
		if s.failed == nil {
			s.failed = err
		}
		s.mu.Unlock()
	}
	b.done, b.err = true, err
}

func (s *userStore) appendToJournal(buf []byte) error {
	if _, err := s.journal.Write(buf); err != nil {
		return fmt.Errorf("user store: %w", err)
	}
	if err := s.journal.Sync(); err != nil {
		return fmt.Errorf("user store: %w", err)
	}
	s.journalSize += int64(len(buf))
	return nil
}

// storeSnapshot is the store's content at one moment, for a snapshot.
type storeSnapshot struct {
	users  []*User
	claims []*claimRecord
}

// snapshotLocked copies the store's content. Records and claims are
// immutable, so the copy can be written while writes go on. s.mu is held.
func (s *userStore) snapshotLocked() *storeSnapshot {
	snap := &storeSnapshot{users: slices.Clone(s.byID)}
	for _, u := range s.byID {
		snap.claims = append(snap.claims, s.claims[u.ID]...)
	}
	return snap
}

// startCompaction switches writes to a new journal generation and writes a
// snapshot of users in the background. flushMu is held. If the new journal
// cannot be created, writes stay on the current one and compaction is put
// off; the store stays correct either way.
func (s *userStore) startCompaction(snapshot *storeSnapshot) {
	through := s.journalGen
	next, err := createJournal(s.journalPath(through+1), through+1)
	if err != nil {
		s.log.Warn("user store: cannot start a new journal; compaction put off", "err", err)
		s.compactAt = s.journalSize + minCompactBytes
		return
	}
	if err := s.journal.Close(); err != nil {
		s.log.Warn("user store: closing the old journal", "err", err)
	}
	s.journal, s.journalGen = next, through+1
	s.journalSize = headerSize(fileHeader{Format: journalFormat, Version: 1, Generation: s.journalGen})
	s.compacting = true
	s.compactionWG.Add(1)
	go func() {
		defer s.compactionWG.Done()
		size, err := s.writeSnapshot(snapshot, through)
		s.flushMu.Lock()
		defer s.flushMu.Unlock()
		s.compacting = false
		if err != nil {
			s.log.Warn("user store: snapshot failed; the journals still hold every record", "err", err)
			s.compactAt = s.journalSize + minCompactBytes
			return
		}
		s.compactAt = max(minCompactBytes, size)
	}()
}

// writeSnapshot writes users atomically as the snapshot including journal
// generation through, then deletes the journals it replaces.
func (s *userStore) writeSnapshot(snapshot *storeSnapshot, through int64) (int64, error) {
	var size int64
	err := writeFileAtomic(filepath.Join(s.dir, snapshotName), func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		write := func(line []byte) error {
			size += int64(len(line))
			_, err := bw.Write(line)
			return err
		}
		if err := write(encodeHeader(fileHeader{Format: snapshotFormat, Version: 1, Generation: through})); err != nil {
			return err
		}
		var line []byte
		for _, u := range snapshot.users {
			line = appendRecord(line[:0], u)
			if err := write(line); err != nil {
				return err
			}
		}
		// Claims follow all users, so each names a user stored before it.
		for _, c := range snapshot.claims {
			line = appendClaim(line[:0], c)
			if err := write(line); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
	if err != nil {
		return 0, err
	}
	for gen := through; gen >= 1; gen-- {
		err := os.Remove(s.journalPath(gen))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return size, err
		}
	}
	return size, nil
}

// createJournal creates a journal file with its header and makes its
// directory entry durable, so that fsyncs of later appends are enough.
func createJournal(path string, gen int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(encodeHeader(fileHeader{Format: journalFormat, Version: 1, Generation: gen}))
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Close closes the journal and waits for a snapshot being written. Writes
// after Close fail with errStoreClosed.
func (s *userStore) Close() error {
	s.flushMu.Lock()
	s.mu.Lock()
	if s.failed == nil {
		s.failed = errStoreClosed
	}
	s.mu.Unlock()
	var err error
	if s.journal != nil {
		err = s.journal.Close()
		s.journal = nil // No compaction can start from here on.
	}
	s.flushMu.Unlock()
	s.compactionWG.Wait()
	if err != nil {
		return fmt.Errorf("close user store: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with what write produces, so that path always
// holds either the old or the new content in full: write to a temp file in
// the same directory (created 0600), fsync, rename, fsync the directory.
func writeFileAtomic(path string, write func(io.Writer) error) error {
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
		err = syncDir(dir)
	}
	return err
}

// syncDir makes renames, creations and removals in dir durable.
func syncDir(dir string) error {
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

// claimRecord is a one-time benefit a person took, stored as a journal line
// of its own ({"claim": {...}}), through the user record it was claimed with.
type claimRecord struct {
	Name   string    `json:"name"`
	UserID int64     `json:"user_id"`
	At     time.Time `json:"at"`
}

// claimLinePrefix starts every claim line; a user line starts with "id".
var claimLinePrefix = []byte(`{"claim":`)

func appendClaim(buf []byte, c *claimRecord) []byte {
	line, _ := json.Marshal(struct {
		Claim *claimRecord `json:"claim"`
	}{c}) // Cannot fail: plain data.
	return append(append(buf, line...), '\n')
}

// parseClaimLine decodes and checks one stored claim.
func parseClaimLine(line []byte) (*claimRecord, error) {
	var l struct {
		Claim *claimRecord `json:"claim"`
	}
	if err := decodeStrict(line, &l); err != nil || l.Claim == nil {
		return nil, fmt.Errorf("not a claim record: %v", err)
	}
	c := l.Claim
	switch {
	case !validClaimName(c.Name):
		return nil, fmt.Errorf("claim name %q is not 1 to 32 of a-z, 0-9 and -", c.Name)
	case c.UserID < 1:
		return nil, fmt.Errorf("claim %q names user %d", c.Name, c.UserID)
	case c.At.IsZero():
		return nil, fmt.Errorf("claim %q has no time", c.Name)
	}
	return c, nil
}

// validClaimName reports whether name is 1 to 32 of a-z, 0-9 and -.
func validClaimName(name string) bool {
	if len(name) < 1 || len(name) > 32 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// personLocked returns the ids of the records that are one person with
// user id: those sharing its unionid, or id alone if it has none.
// Ascending, so the first is the person's id. s.mu is held.
func (s *userStore) personLocked(id int64) []int64 {
	if u := s.byID[id-1]; u.UnionID != "" {
		return s.byUnion[u.UnionID]
	}
	return []int64{id}
}

// person returns the records of user id's person, the first being the
// person's earliest, whose id is the person's id.
func (s *userStore) person(id int64) ([]User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > int64(len(s.byID)) {
		return nil, false
	}
	var users []User
	for _, pid := range s.personLocked(id) {
		users = append(users, *s.byID[pid-1])
	}
	return users, true
}

// Claim is a claim as callers see it: the claim and the app it was made in.
type Claim struct {
	Name      string    `json:"name"`
	AppID     string    `json:"appid"`
	UserID    int64     `json:"user_id"`
	ClaimedAt time.Time `json:"claimed_at"`
}

func (s *userStore) claimView(c *claimRecord) Claim {
	return Claim{Name: c.Name, AppID: s.byID[c.UserID-1].AppID, UserID: c.UserID, ClaimedAt: c.At}
}

// findClaimLocked returns the person's earliest claim of name, or nil.
// Two records can hold one name when a unionid learned later joined them
// into one person; the earliest claim is the one that counts.
func (s *userStore) findClaimLocked(person []int64, name string) *claimRecord {
	var found *claimRecord
	for _, id := range person {
		for _, c := range s.claims[id] {
			if c.Name == name && (found == nil || c.At.Before(found.At)) {
				found = c
			}
		}
	}
	return found
}

// claim claims name for user id's person, exactly once: it returns the new
// claim once it is durable, or with taken true the person's earlier claim
// of that name. Of concurrent claims of one name by one person, from any of
// their apps, exactly one is new.
func (s *userStore) claim(id int64, name string) (c Claim, taken bool, err error) {
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return Claim{}, false, s.failed
	}
	if id < 1 || id > int64(len(s.byID)) {
		s.mu.Unlock()
		return Claim{}, false, fmt.Errorf("claim: no user %d", id)
	}
	rec := s.findClaimLocked(s.personLocked(id), name)
	taken = rec != nil
	if !taken {
		rec = &claimRecord{Name: name, UserID: id, At: s.now().UTC().Truncate(time.Millisecond)}
		s.claims[id] = append(s.claims[id], rec)
		s.pending.buf = appendClaim(s.pending.buf, rec)
	}
	// An earlier claim found here may still be on its way to disk: waiting
	// for the pending batch, which is no earlier than the claim's, means
	// nobody is told "already claimed" about a claim that is not durable.
	b := s.pending
	c = s.claimView(rec)
	s.mu.Unlock()
	if err := s.wait(b); err != nil {
		return Claim{}, false, err
	}
	return c, taken, nil
}

// claims lists user id's person's claims, the earliest of each name, in
// the order they were made.
func (s *userStore) claimsOf(id int64) []Claim {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > int64(len(s.byID)) {
		return nil
	}
	person := s.personLocked(id)
	list := []Claim{}
	seen := map[string]bool{}
	for _, pid := range person {
		for _, c := range s.claims[pid] {
			if !seen[c.Name] {
				seen[c.Name] = true
				list = append(list, s.claimView(s.findClaimLocked(person, c.Name)))
			}
		}
	}
	slices.SortStableFunc(list, func(a, b Claim) int { return a.ClaimedAt.Compare(b.ClaimedAt) })
	return list
}
