package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/clock"
	"wxlogin/internal/durable"
	"wxlogin/internal/journal"
	"wxlogin/internal/opendata"
	"wxlogin/internal/strictjson"
	"wxlogin/internal/tokenfile"
)

// This file holds wxlogin's two stores: the token store, in memory, for
// the tokens wxlogin hands to phones and each user's session_key; and the
// user store, for the users of each mini program and their claims, every
// write durable in its journal (internal/journal) before it returns. The
// tokens are saved across a graceful restart in the token file
// (internal/tokenfile).

// The handlers reach the stores through userBackend and tokenBackend: on
// one machine these are the stores of this file, on the data directory and
// in memory (fileUsers, memoryTokens); with -redis they are Redis, shared by
// every instance (redisstore.Store). Every call takes the request's context,
// which bounds a call to Redis, and may fail: a write that cannot be made
// durable, or a Redis that cannot be reached, is an error, never a reply.
type userBackend interface {
	// Login records a login of (appID, openID), creating the user the first
	// time, and reports whether it did; exactly one of concurrent first
	// logins does.
	Login(ctx context.Context, appID, openID, unionID string) (account.User, bool, error)
	Get(ctx context.Context, id int64) (account.User, bool, error)
	// Update applies change to user id's record and stores it.
	Update(ctx context.Context, id int64, change func(u *account.User)) (account.User, error)
	// Person is user id's record, and the records of its person, the
	// earliest first, this one among them.
	Person(ctx context.Context, id int64) (account.User, []account.Member, bool, error)
	// Claim claims name for user id's person exactly once, or reports the
	// earlier claim with taken true.
	Claim(ctx context.Context, id int64, name string) (c account.Claim, taken bool, err error)
	ClaimsOf(ctx context.Context, id int64) ([]account.Claim, error)
	Erase(ctx context.Context, id int64) (account.Erasure, error)
	// Health is nil while the store can serve; for /healthz.
	Health(ctx context.Context) error
}

// tokenBackend holds the tokens and each user's session_key.
type tokenBackend interface {
	// Issue creates a token for who, whose session_key key becomes; it
	// fails with account.ErrNoUser when who was erased meanwhile.
	Issue(ctx context.Context, who account.Identity, key string) (string, error)
	Lookup(ctx context.Context, token string) (account.Caller, bool, error)
	Revoke(ctx context.Context, who account.Caller) error
	RevokeUser(ctx context.Context, id int64) (int, error)
	Lifetime() time.Duration
}

// tokenEntry is one live token: whose it is and when it dies. It is kept
// small, because there is one per phone that logged in; who the user is and
// their session_key are held once per user, in the loginState it points at.
type tokenEntry struct {
	user     *loginState
	issuedAt int64        // on the monotonic clock (clock.elapsed), in nanoseconds
	lastUsed atomic.Int64 // likewise, of the last successful lookup
}

// touch records a use at now, keeping the latest of concurrent uses.
func (e *tokenEntry) touch(now int64) {
	n := now
	for {
		old := e.lastUsed.Load()
		if n <= old || e.lastUsed.CompareAndSwap(old, n) {
			return
		}
	}
}

// loginState is a user's login state, shared by all their tokens: who they
// are and their newest session_key, which a new login replaces for every
// token at once (WeChat keeps one valid session_key per user).
type loginState struct {
	who account.Identity
	key atomic.Pointer[sessionKey]
}

// sessionKey is one session_key and when wxlogin got it, with the one it
// replaced while that is in its window. It is immutable; a new login
// stores a new one.
type sessionKey struct {
	key      string
	storedAt int64 // on the monotonic clock, in nanoseconds
	// previous is the key this one replaced, kept for
	// opendata.PreviousKeyWindow after replacedAt; nil when there is none or its
	// window has closed.
	previous   *sessionKey
	replacedAt int64 // of previous: when this key replaced it, on the monotonic clock
}

// previousInWindow reports whether k's previous key is still to be
// accepted at now.
func (k *sessionKey) previousInWindow(now int64) bool {
	return k.previous != nil && now-k.replacedAt <= int64(opendata.PreviousKeyWindow)
}

// tokenStore holds the login state wxlogin hands to mini programs: random
// tokens, each bound to a user, and each user's newest session_key. It lives
// in memory; save and load carry it across a graceful restart.
type tokenStore struct {
	ttl    time.Duration // a token dies this long after its last successful use
	maxAge time.Duration // and never lives longer than this after it was issued
	clock  clock.Clock   // lifetimes run on its monotonic side

	tokens sync.Map // tokenHash → *tokenEntry; read by every authenticated request

	// users is read only by logins, sweeps and saves: a lookup goes from the
	// token straight to its loginState. A plain map takes less memory than
	// a sync.Map here, which matters at a million users (BENCHMARKS.md, RSS).
	mu    sync.Mutex // guards users
	users map[int64]*loginState

	liveAtSweep atomic.Int64 // the live tokens the last sweep left, for the metrics
}

func newTokenStore(ttl, maxAge time.Duration, c clock.Clock) *tokenStore {
	return &tokenStore{ttl: ttl, maxAge: maxAge, clock: c, users: map[int64]*loginState{}}
}

// monotonic is now on the store's monotonic clock, in nanoseconds.
func (s *tokenStore) monotonic() int64 { return int64(s.clock.Elapsed()) }

// lifetime is how long a fresh token lives if it is not used again.
func (s *tokenStore) lifetime() time.Duration { return min(s.ttl, s.maxAge) }

// expiry is when e dies unless it is used before then, on the monotonic
// clock.
func (s *tokenStore) expiry(e *tokenEntry) int64 {
	return min(e.lastUsed.Load()+int64(s.ttl), e.issuedAt+int64(s.maxAge))
}

// alive reports whether e is still alive at now, on the monotonic clock.
func (s *tokenStore) alive(e *tokenEntry, now int64) bool { return now < s.expiry(e) }

// setSessionKey makes key the session_key of who from now on and returns
// who's loginState.
func (s *tokenStore) setSessionKey(who account.Identity, key *sessionKey) *loginState {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := s.users[who.UserID]
	if state == nil {
		state = &loginState{who: who}
		s.users[who.UserID] = state
	}
	switch old := state.key.Load(); {
	case old == nil:
	case old.key != key.key:
		key.previous, key.replacedAt = &sessionKey{key: old.key, storedAt: old.storedAt}, key.storedAt
	default:
		// The same key again: what it replaced still is, since the same
		// moment, so that repeated logins cannot stretch its window.
		key.previous, key.replacedAt = old.previous, old.replacedAt
	}
	state.key.Store(key)
	return state
}

// loginStateOf returns user id's login state, or nil.
func (s *tokenStore) loginStateOf(id int64) *loginState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[id]
}

// issue creates a token for who. The token is 32 bytes from crypto/rand,
// base64url without padding: nothing about it can be guessed from the time or
// the session_key. The session_key becomes the one used for who from now on,
// also by who's other tokens.
func (s *tokenStore) issue(who account.Identity, key string) string {
	token := randomText(32, base64.RawURLEncoding.EncodeToString)

	now := s.monotonic()
	e := &tokenEntry{user: s.setSessionKey(who, &sessionKey{key: key, storedAt: now}), issuedAt: now}
	e.lastUsed.Store(now)
	s.tokens.Store(account.HashToken(token), e)
	return token
}

// randomText is n bytes from crypto/rand, as text in the given encoding
// (hex.EncodeToString, base64.RawURLEncoding.EncodeToString, …).
func randomText(n int, encode func([]byte) string) string {
	b := make([]byte, n)
	rand.Read(b) // Never fails: crypto/rand.Read crashes the program rather than return short.
	return encode(b)
}

// lookup resolves a token. An expired token is rejected here even if the
// sweeper has not removed it yet; a valid one has its idle lifetime renewed.
func (s *tokenStore) lookup(token string) (account.Caller, bool) {
	h := account.HashToken(token)
	v, ok := s.tokens.Load(h)
	if !ok {
		return account.Caller{}, false
	}
	e := v.(*tokenEntry)
	now := s.monotonic()
	if !s.alive(e, now) {
		s.tokens.CompareAndDelete(h, e)
		return account.Caller{}, false
	}
	e.touch(now)
	k := e.user.key.Load()
	who := account.Caller{Identity: e.user.who, SessionKey: k.key, Hash: h}
	if k.previousInWindow(now) {
		who.PreviousKey = k.previous.key
		who.ReplacedAt = s.clock.Now().Add(time.Duration(k.replacedAt - now))
	}
	return who, true
}

// revoke ends the caller's token at once.
func (s *tokenStore) revoke(who account.Caller) { s.tokens.Delete(who.Hash) }

// revokeUser ends every token of user id at once, forgets the user's
// session_key, and reports how many live tokens it ended (expired ones the
// sweeper has not freed yet go too, uncounted). It visits every token: it
// is for account deletion, which is rare.
func (s *tokenStore) revokeUser(id int64) int {
	revoked, now := 0, s.monotonic()
	s.tokens.Range(func(k, v any) bool {
		e := v.(*tokenEntry)
		if e.user.who.UserID == id && s.tokens.CompareAndDelete(k, v) && s.alive(e, now) {
			revoked++
		}
		return true
	})
	s.mu.Lock()
	delete(s.users, id)
	s.mu.Unlock()
	return revoked
}

// save writes the live tokens, and the session keys they use, to the token
// file at path (internal/tokenfile), and reports how many tokens it wrote.
// It runs after the server has stopped, so no token is issued while it
// writes.
func (s *tokenStore) save(path string) (int, error) {
	now, wallNow := s.monotonic(), s.clock.Now()
	// The file holds wall times, as Unix nanoseconds, for the next process,
	// whose monotonic clock starts elsewhere.
	toWall := func(at int64) int64 { return at - now + wallNow.UnixNano() }
	needed := map[*loginState]bool{}
	s.tokens.Range(func(_, v any) bool {
		if e := v.(*tokenEntry); s.alive(e, now) {
			needed[e.user] = true
		}
		return true
	})
	keys := func(yield func(tokenfile.SessionKey) bool) {
		for state := range needed {
			k := state.key.Load()
			if !yield(tokenfile.SessionKey{
				UserID: state.who.UserID, AppID: state.who.AppID, OpenID: state.who.OpenID, SessionKey: k.key, StoredAt: toWall(k.storedAt),
			}) {
				return
			}
		}
	}
	saved := 0
	tokens := func(yield func(tokenfile.Token) bool) {
		s.tokens.Range(func(k, v any) bool {
			e := v.(*tokenEntry)
			if !s.alive(e, now) {
				return true
			}
			saved++
			return yield(tokenfile.Token{
				Hash: k.(account.TokenHash), UserID: e.user.who.UserID, IssuedAt: toWall(e.issuedAt), LastUsedAt: toWall(e.lastUsed.Load()),
			})
		})
	}
	if err := tokenfile.Save(path, wallNow, keys, tokens); err != nil {
		return 0, fmt.Errorf("save tokens: %w", err)
	}
	return saved, nil
}

// load reads tokens saved by save, keeps those still alive, and removes the
// file. Removing it matters: a token revoked after this start must not come
// back from the old file after a later crash. userOf gives each token's
// identity from the user store; a token whose user it does not know, or
// knows under another appid or openid, is dropped.
//
// A file it cannot read whole (an older wxlogin's, one cut short, garbage)
// is dropped with every login in it, and removed, and load returns an
// error that wraps errTokenFileDropped, for the log: it names the file and
// the line and says what is wrong, never quoting the file, which holds
// session keys.
func (s *tokenStore) load(path string, userOf func(id int64) (account.Identity, bool)) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load tokens: %w", err)
	}
	loaded, readErr := s.readTokenFile(f, path, userOf)
	f.Close()
	if readErr != nil {
		// What was read before the fault goes too: the file is dropped
		// whole, as the README promises, not in part.
		s.tokens.Clear()
		s.mu.Lock()
		s.users = map[int64]*loginState{}
		s.mu.Unlock()
		loaded, readErr = 0, fmt.Errorf("%w: %w", readErr, errTokenFileDropped)
	}
	s.sweep() // Drops the session keys of users whose tokens all expired while we were down.
	if err := os.Remove(path); err != nil {
		return 0, fmt.Errorf("load tokens: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return 0, fmt.Errorf("load tokens: %w", err)
	}
	return loaded, readErr
}

// errTokenFileDropped is what load wraps when it could not read the token
// file whole, and dropped and removed it. Tokens are login state, not user
// data: a crash loses them too, and each phone simply logs in again, where
// refusing to start would keep everyone out until someone deleted the file.
var errTokenFileDropped = errors.New("its logins are dropped, and users log in again")

// readTokenFile puts the live tokens of the token file r, at path, in s
// and counts them.
func (s *tokenStore) readTokenFile(r io.Reader, path string, userOf func(id int64) (account.Identity, bool)) (int, error) {
	now, wallNow, loaded := s.monotonic(), s.clock.Now().UnixNano(), 0
	var fromWall func(at int64) int64 // set by the header
	err := tokenfile.Read(r, path,
		func(savedAt time.Time) { fromWall = s.fromSaved(now, wallNow, savedAt.UnixNano()) },
		func(k tokenfile.SessionKey) {
			if who, ok := userOf(k.UserID); ok && who.AppID == k.AppID && who.OpenID == k.OpenID {
				s.setSessionKey(who, &sessionKey{key: k.SessionKey, storedAt: fromWall(k.StoredAt)})
			}
		},
		func(t tokenfile.Token) {
			e := &tokenEntry{user: s.loginStateOf(t.UserID), issuedAt: fromWall(t.IssuedAt)}
			e.lastUsed.Store(fromWall(t.LastUsedAt))
			if e.user != nil && s.alive(e, now) {
				s.tokens.Store(t.Hash, e)
				loaded++
			}
		})
	if err != nil {
		return 0, err
	}
	return loaded, nil
}

// fromSaved puts the times of a file saved at savedAt (Unix nanoseconds,
// as the saving process's clock read) on this process's monotonic clock,
// where it is now now, and the wall clock reads wallNow. A time's age at
// the save is the saving process's own measure, kept exact; the time the
// server was down is the wall clocks' difference, taken as none if
// negative: so a clock that ran ahead or behind at either end keeps no token
// past its age. Both are capped beyond the longest lifetime, where a token
// is dead anyway, so that no value in the file can overflow.
func (s *tokenStore) fromSaved(now, wallNow, savedAt int64) func(at int64) int64 {
	limit := int64(max(s.ttl, s.maxAge)) + 1
	down := min(max(0, wallNow-savedAt), limit)
	return func(at int64) int64 {
		age := int64(0)
		switch {
		case at <= savedAt-limit: // written so as not to overflow, whatever at is
			age = limit
		case at < savedAt:
			age = savedAt - at
		}
		return now - age - down
	}
}

// userStore is the durable store of users and their claims. Reads are
// served from memory; every write returns only once its line is durable in
// the journal, which is all the store knows of files.
type userStore struct {
	now     func() time.Time
	journal *journal.Journal
	// storedMeta is what the store's newest file records of it (meta);
	// set for a store read from a backup or a repair too, which have no
	// journal.
	storedMeta json.RawMessage

	mu      sync.Mutex // guards the fields below, and the order of appends to journal
	byRef   map[account.Ref]*account.User
	byID    []*account.User    // byID[id-1]: ids are assigned densely, in journal order
	byUnion map[string][]int64 // unionid → the ids of the records that share it, ascending
	claims  map[int64][]*claimRecord
	line    []byte // the line being appended, reused

	// Account deletion (erase.go): the ids of erased users, whose places in
	// byID are nil, and the claims they made, by person.
	erasedAt  map[int64]time.Time
	kept      map[string][]*keptClaim
	personKey []byte
	// erasedInFiles is set by a replay that found an erased user's record
	// still in the files: the compaction the erasure asked for never
	// finished (a crash, a failed snapshot).
	erasedInFiles bool
}

// openUserStore loads the user store in dir, creating dir if needed. A
// store created in the other mode is refused: in mock mode anyone can log
// in as a user of any name, and none of those users may reach real mode.
// synced, when set, is told of each fsync of a write (the metrics).
func openUserStore(dir string, meta account.Meta, now func() time.Time, log *slog.Logger, synced func(time.Duration, error)) (*userStore, error) {
	metaJSON, _ := json.Marshal(meta) // Cannot fail: plain data.
	s, err := loadUserStore(dir, journal.Options{Meta: metaJSON, Log: log, Synced: synced}, now)
	if err != nil {
		return nil, err
	}
	stored, err := s.meta()
	switch {
	case err != nil:
		err = fmt.Errorf("open user store: %w", err)
	case stored.Mode != "" && stored.Mode != meta.Mode:
		err = fmt.Errorf("open user store: %s was created in %s mode, and wxlogin is in %s mode. "+
			"Users made up in mock mode must never reach real mode, nor real users the fake: "+
			"give this mode a data directory of its own (-data / WXLOGIN_DATA)", dir, stored.Mode, meta.Mode)
	case stored.Mode == "" && s.count() > 0:
		log.Warn("user store: its files predate the record of the mode; taking it to be in this one", "mode", meta.Mode)
	}
	if err == nil {
		err = s.finishErasures()
	}
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// loadUserStore replays the user store's journal in dir.
func loadUserStore(dir string, opts journal.Options, now func() time.Time) (*userStore, error) {
	s := &userStore{now: now}
	opts.Snapshot = s.snapshotLines
	j, err := journal.Open(dir, "users", opts)
	if err != nil {
		return nil, fmt.Errorf("open user store: %w", err)
	}
	// A record takes about 240 bytes on disk, counting the journal lines a
	// snapshot has not absorbed yet. Sizing the maps now, a little over,
	// rather than growing them by doubling, saves rehashing (BENCHMARKS.md,
	// start-up).
	s.makeIndexes(int(j.StoredBytes() / 210))
	if err := journal.Replay(j, parseStoredLine, s.replay); err != nil {
		return nil, errors.Join(fmt.Errorf("open user store: %w", err), j.Close())
	}
	s.journal, s.storedMeta = j, j.StoredMeta()
	return s, nil
}

// makeIndexes makes the store's maps for about expected users.
func (s *userStore) makeIndexes(expected int) {
	s.byRef = make(map[account.Ref]*account.User, expected)
	s.byUnion = make(map[string][]int64, expected)
	s.byID = make([]*account.User, 0, expected)
	s.claims = map[int64][]*claimRecord{}
	s.erasedAt = map[int64]time.Time{}
	s.kept = map[string][]*keptClaim{}
}

// census counts the store's users, the persons they are, and their claims.
func (s *userStore) census() (users, persons, claims int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	persons = len(s.byUnion)
	for _, u := range s.byID {
		if u == nil {
			continue // erased
		}
		if u.UnionID == "" {
			persons++
		}
		claims += len(s.claims[u.ID])
	}
	return len(s.byRef), persons, claims
}

// meta is what the store's newest file records of it, zero for files of
// the earlier format.
func (s *userStore) meta() (account.Meta, error) {
	var m account.Meta
	if s.storedMeta == nil {
		return m, nil
	}
	if err := strictjson.Decode(s.storedMeta, &m); err != nil {
		return m, fmt.Errorf("the store's files record %s, not what a user store records of itself", s.storedMeta)
	}
	return m, nil
}

// replay puts a stored line in memory, enforcing the store's invariants:
// ids are dense and in order, one (appid, openid) has one id, a claim's
// user is stored before it, and one record never claims one name twice.
// Lines may be replayed twice (see journal.go): a record replaces itself,
// and a claim made at the same moment is the same claim.
func (s *userStore) replay(l storedLine) error {
	if l.user == nil && l.claim == nil {
		return s.replayErasure(l)
	}
	if c := l.claim; c != nil {
		if c.UserID > int64(len(s.byID)) || s.byID[c.UserID-1] == nil {
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
	u := l.user
	switch n := int64(len(s.byID)); {
	case u.ID == n+1:
		if other, ok := s.byRef[u.Ref()]; ok {
			return fmt.Errorf("user %d duplicates user %d (appid %s, openid %s)", u.ID, other.ID, u.AppID, u.OpenID)
		}
	case u.ID <= n:
		if s.byID[u.ID-1] == nil {
			return fmt.Errorf("user %d was erased before this line", u.ID)
		}
		if s.byID[u.ID-1].Ref() != u.Ref() {
			return fmt.Errorf("user %d changes appid or openid", u.ID)
		}
	default:
		return fmt.Errorf("user %d skips ids after %d", u.ID, n)
	}
	s.setLocked(u)
	return nil
}

// snapshotLines copies the store's content for the journal's snapshot and
// returns it as lines: every user (or, for an erased one, the erasure),
// then every claim, so that each claim names a user stored before it, then
// the claims erased users made. Records and claims are immutable, so the
// copy can be written out while writes go on.
func (s *userStore) snapshotLines() iter.Seq[[]byte] {
	s.mu.Lock()
	users := slices.Clone(s.byID)
	erasedAt := maps.Clone(s.erasedAt)
	var claims []*claimRecord
	for _, u := range users {
		if u != nil {
			claims = append(claims, s.claims[u.ID]...)
		}
	}
	kept := s.keptLinesLocked()
	s.mu.Unlock()
	return func(yield func([]byte) bool) {
		var line []byte
		for i, u := range users {
			if u == nil {
				line = erasedLine(line[:0], int64(i+1), erasedAt[int64(i+1)])
			} else {
				line = appendRecord(line[:0], u)
			}
			if !yield(line) {
				return
			}
		}
		for _, c := range claims {
			if line = appendClaim(line[:0], c); !yield(line) {
				return
			}
		}
		for _, k := range kept {
			if !yield(k) {
				return
			}
		}
	}
}

// writeFailure is why the store refuses writes after a failed one, or nil.
func (s *userStore) writeFailure() error { return s.journal.WriteFailure() }

// writeBackup writes the store as it is now to w, in a snapshot's format,
// every line of it durable before the first byte goes out; writes go on
// meanwhile. A backup cut short has no trailer, so readBackup refuses it.
func (s *userStore) writeBackup(w io.Writer) error { return s.journal.WriteBackup(w) }

// Close closes the journal and waits for a snapshot being written. Writes
// after Close fail. It returns an error if a write had failed before: the
// store took no write since, and the operator must know.
func (s *userStore) Close() error {
	if s.journal == nil {
		return nil // read from a backup, or a repair: no files
	}
	if err := s.journal.Close(); err != nil {
		return fmt.Errorf("close user store: %w", err)
	}
	return nil
}

// login records a login of (appID, openID): it creates the user the first
// time, and otherwise updates last_login_at and a newly learned unionid. It
// returns once the record is durable, and reports whether it was created.
// Exactly one of any number of concurrent first logins creates the user.
func (s *userStore) login(appID, openID, unionID string) (account.User, bool, error) {
	now, err := s.stamp(time.Second)
	if err != nil {
		return account.User{}, false, err
	}
	if err := s.lockForWrite(); err != nil {
		return account.User{}, false, err
	}
	u, found := s.byRef[account.Ref{AppID: appID, OpenID: openID}]
	if found {
		updated := *u
		updated.LastLoginAt = now
		if unionID != "" && unionID != u.UnionID {
			updated.UnionID, updated.UpdatedAt = unionID, now
		}
		u = &updated
	} else {
		u = &account.User{
			ID: int64(len(s.byID)) + 1, AppID: appID, OpenID: openID, UnionID: unionID,
			CreatedAt: now, UpdatedAt: now, LastLoginAt: now,
		}
	}
	b := s.putLocked(u)
	s.mu.Unlock()

	// A concurrent first login that found the record above still waits here,
	// for a batch no earlier than the creating one: batches are written in
	// order, so nobody is told about a user before the user is durable.
	if err := s.journal.Wait(b); err != nil {
		return account.User{}, false, err
	}
	return *u, !found, nil
}

// update applies change to a copy of user id's record and stores it,
// returning once it is durable. A change that leaves the record as it was
// writes nothing. change must only set fields; it runs under the store's lock.
func (s *userStore) update(id int64, change func(u *account.User)) (account.User, error) {
	now, err := s.stamp(time.Second)
	if err != nil {
		return account.User{}, err
	}
	if err := s.lockForWrite(); err != nil {
		return account.User{}, err
	}
	old := s.recordLocked(id)
	if old == nil {
		s.mu.Unlock()
		return account.User{}, fmt.Errorf("update: %w %d", account.ErrNoUser, id)
	}
	u := *old
	change(&u)
	u.ID, u.AppID, u.OpenID, u.CreatedAt = old.ID, old.AppID, old.OpenID, old.CreatedAt
	if u == *old {
		s.mu.Unlock()
		return u, nil
	}
	u.UpdatedAt = now
	b := s.putLocked(&u)
	s.mu.Unlock()
	if err := s.journal.Wait(b); err != nil {
		return account.User{}, err
	}
	return u, nil
}

// stamp is the time a write records, in UTC to the given precision. A clock
// outside the years a record can hold is an error here, before the store
// changes anything: the record writer must never meet such a time.
func (s *userStore) stamp(precision time.Duration) (time.Time, error) {
	t := s.now().UTC().Truncate(precision)
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("user store: the clock reads %v, outside the years a record holds", t)
	}
	return t, nil
}

// lockForWrite takes s.mu for a write, unless the store refuses writes
// (after a failed write, or Close): then it returns why, without the lock.
func (s *userStore) lockForWrite() error {
	s.mu.Lock()
	if err := s.journal.Err(); err != nil {
		s.mu.Unlock()
		return err
	}
	return nil
}

// recordLocked is user id's record, or nil if there is none. s.mu is held.
func (s *userStore) recordLocked(id int64) *account.User {
	if id < 1 || id > int64(len(s.byID)) {
		return nil
	}
	return s.byID[id-1]
}

// putLocked makes u the current record of its user and appends it to the
// journal, returning the batch to wait for. s.mu is held; records are never
// changed once put, only replaced.
func (s *userStore) putLocked(u *account.User) *journal.Batch {
	s.setLocked(u)
	s.line = appendRecord(s.line[:0], u)
	return s.journal.Append(s.line)
}

// setLocked makes u the record of its id, appending a new id (or filling
// one a repair found lost), and keeps the unionid index in step. s.mu is
// held, or the store is being opened.
func (s *userStore) setLocked(u *account.User) {
	if u.ID > int64(len(s.byID)) {
		s.byID = append(s.byID, u)
	} else {
		old := s.byID[u.ID-1]
		if old != nil && old.UnionID != "" && old.UnionID != u.UnionID {
			s.unlinkUnionLocked(old)
		}
		s.byID[u.ID-1] = u
	}
	s.byRef[u.Ref()] = u
	if u.UnionID != "" {
		ids := s.byUnion[u.UnionID]
		if i, found := slices.BinarySearch(ids, u.ID); !found {
			s.byUnion[u.UnionID] = slices.Insert(ids, i, u.ID)
		}
	}
}

// unlinkUnionLocked takes u out of its unionid's person. s.mu is held, or
// the store is being opened.
func (s *userStore) unlinkUnionLocked(u *account.User) {
	ids := slices.DeleteFunc(s.byUnion[u.UnionID], func(id int64) bool { return id == u.ID })
	if len(ids) == 0 {
		delete(s.byUnion, u.UnionID)
	} else {
		s.byUnion[u.UnionID] = ids
	}
}

// get returns the user with the given id.
func (s *userStore) get(id int64) (account.User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.recordLocked(id)
	if u == nil {
		return account.User{}, false
	}
	return *u, true
}

// exists reports whether user id is stored (not erased).
func (s *userStore) exists(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recordLocked(id) != nil
}

// identity returns who user id is. Its strings are the record's own: a copy
// of a string shares its bytes.
func (s *userStore) identity(id int64) (account.Identity, bool) {
	u, ok := s.get(id)
	return account.Identity{AppID: u.AppID, OpenID: u.OpenID, UserID: u.ID}, ok
}

// count reports how many users are stored (erased ones are not).
func (s *userStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byRef)
}

// personLocked returns the ids of the records that are one person with
// user u: those sharing its unionid, or u alone if it has none. Ascending,
// so the first is the person's id. s.mu is held.
func (s *userStore) personLocked(u *account.User) []int64 {
	if u.UnionID != "" {
		return s.byUnion[u.UnionID]
	}
	return []int64{u.ID}
}

// person returns the records of user id's person, the first being the
// person's earliest, whose id is the person's id.
func (s *userStore) person(id int64) ([]account.User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.recordLocked(id)
	if u == nil {
		return nil, false
	}
	var users []account.User
	for _, pid := range s.personLocked(u) {
		users = append(users, *s.byID[pid-1])
	}
	return users, true
}

// claimRecord is a one-time benefit a person took, stored as a journal line
// of its own, through the user record it was claimed with.
type claimRecord struct {
	Name   string    `json:"name"`
	UserID int64     `json:"user_id"`
	At     time.Time `json:"at"`
}

func (s *userStore) viewClaim(c *claimRecord) account.Claim {
	return account.Claim{Name: c.Name, AppID: s.byID[c.UserID-1].AppID, UserID: c.UserID, ClaimedAt: c.At}
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
func (s *userStore) claim(id int64, name string) (c account.Claim, taken bool, err error) {
	now, err := s.stamp(time.Millisecond)
	if err != nil {
		return account.Claim{}, false, err
	}
	if err := s.lockForWrite(); err != nil {
		return account.Claim{}, false, err
	}
	u := s.recordLocked(id)
	if u == nil {
		s.mu.Unlock()
		return account.Claim{}, false, fmt.Errorf("claim: %w %d", account.ErrNoUser, id)
	}
	c, taken = s.earliestClaimLocked(u, name)
	var b *journal.Batch
	if taken {
		// The earlier claim may still be on its way to disk: waiting for
		// everything appended so far means nobody is told "already claimed"
		// about a claim that is not durable.
		b = s.journal.Barrier()
	} else {
		rec := &claimRecord{Name: name, UserID: id, At: now}
		s.claims[id] = append(s.claims[id], rec)
		s.line = appendClaim(s.line[:0], rec)
		b = s.journal.Append(s.line)
		c = s.viewClaim(rec)
	}
	s.mu.Unlock()
	if err := s.journal.Wait(b); err != nil {
		return account.Claim{}, false, err
	}
	return c, taken, nil
}

// earliestClaimLocked is user u's person's earliest claim of name, among
// their records' and, if one of them was erased, the claims kept of it
// (erase.go). s.mu is held.
func (s *userStore) earliestClaimLocked(u *account.User, name string) (account.Claim, bool) {
	rec := s.findClaimLocked(s.personLocked(u), name)
	if k := s.keptClaimLocked(u, name); k != nil && (rec == nil || k.At.Before(rec.At)) {
		return account.Claim{Name: k.Name, AppID: k.AppID, UserID: k.UserID, ClaimedAt: k.At}, true
	}
	if rec == nil {
		return account.Claim{}, false
	}
	return s.viewClaim(rec), true
}

// claimsOf lists user id's person's claims, the earliest of each name, in
// the order they were made.
func (s *userStore) claimsOf(id int64) []account.Claim {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.recordLocked(id)
	if u == nil {
		return nil
	}
	names := map[string]bool{}
	for _, pid := range s.personLocked(u) {
		for _, c := range s.claims[pid] {
			names[c.Name] = true
		}
	}
	if len(s.kept) > 0 {
		for _, k := range s.kept[s.personHash(u)] {
			names[k.Name] = true
		}
	}
	list := []account.Claim{}
	for name := range names {
		c, _ := s.earliestClaimLocked(u, name)
		list = append(list, c)
	}
	slices.SortStableFunc(list, func(a, b account.Claim) int {
		return cmp.Or(a.ClaimedAt.Compare(b.ClaimedAt), strings.Compare(a.Name, b.Name))
	})
	return list
}
