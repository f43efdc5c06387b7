package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/clock"
	"wxlogin/internal/durable"
	"wxlogin/internal/events"
	"wxlogin/internal/journal"
	"wxlogin/internal/opendata"
	"wxlogin/internal/tokenfile"
	"wxlogin/internal/users"
)

// This file holds the stores the handlers hold: the token store, in
// memory, for the tokens wxlogin hands to phones and each user's
// session_key, saved across a graceful restart in the token file
// (internal/tokenfile); and, behind the same interfaces, the user store,
// for the users of each mini program and their claims, every write durable
// in its journal before it returns (internal/users).

// The handlers reach the stores through userBackend and tokenBackend: on
// one machine these are the user store on the data directory and the token
// store of this file, in memory (fileUsers, memoryTokens); with -redis they
// are Redis, shared by every instance (redisstore.Store). Every call takes
// the request's context, which bounds a call to Redis, and may fail: a
// write that cannot be made durable, or a Redis that cannot be reached, is
// an error, never a reply.
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

// eventLog is a store's record of events (internal/events), with -events:
// each recorded in the durable write of the change it tells of, numbered
// in the order they were made. GET /events lists them; the webhook
// delivers them through the rest of the store's record, a
// webhook.Source: the cursor of what is delivered, and the hold that lets
// one instance deliver at a time.
type eventLog interface {
	// Events lists up to limit events with a seq above after, oldest
	// first: only events whose changes are durable.
	Events(ctx context.Context, after int64, limit int) ([]events.Event, error)
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

// loginWithToken is a store that holds both the users and the tokens, and
// records a login and issues its token in one step: Redis, in one round
// trip for a returning user (redisstore.Store.LoginWithToken).
type loginWithToken interface {
	LoginWithToken(ctx context.Context, appID, openID, unionID, key string) (account.User, bool, string, error)
}

// logIn records the login of the user a code was exchanged for, creating
// the user the first time (created), and issues a token for it, whose
// session_key the exchanged one becomes: in one step where one store holds
// both, else the user store's Login, then the token store's Issue.
func logIn(ctx context.Context, users userBackend, tokens tokenBackend, appID string, s code2SessionResult) (u account.User, created bool, token string, err error) {
	if both, ok := users.(loginWithToken); ok && any(tokens) == any(users) {
		return both.LoginWithToken(ctx, appID, s.OpenID, s.UnionID, s.SessionKey)
	}
	if u, created, err = users.Login(ctx, appID, s.OpenID, s.UnionID); err != nil {
		return u, false, "", err
	}
	token, err = tokens.Issue(ctx, account.Identity{AppID: u.AppID, OpenID: u.OpenID, UserID: u.ID}, s.SessionKey)
	return u, created, token, err
}

// eraseWithTokens is a store that holds both the users and the tokens, and
// ends the user's tokens in the same step as its erasure: Redis
// (redisstore.Store.EraseWithTokens).
type eraseWithTokens interface {
	EraseWithTokens(ctx context.Context, id int64) (account.Erasure, int, error)
}

// erase erases user id and ends every token of theirs, reporting how many
// were alive: in one step where one store holds both, else the user
// store's Erase, then the token store's RevokeUser. The tokens end there
// whether the erasure succeeded or not: one that failed may have been made
// in memory and not on the disk (the store then refuses writes until it
// is restarted), and a user who asked to be deleted is at least logged out
// everywhere; a retry finds the token dead, and the user logs in again to
// ask again if the erasure did not survive.
func erase(ctx context.Context, users userBackend, tokens tokenBackend, id int64) (account.Erasure, int, error) {
	if both, ok := users.(eraseWithTokens); ok && any(tokens) == any(users) {
		return both.EraseWithTokens(ctx, id)
	}
	gone, err := users.Erase(ctx, id)
	revoked, revokeErr := tokens.RevokeUser(ctx, id)
	if err != nil {
		return account.Erasure{}, 0, err
	}
	return gone, revoked, revokeErr
}

// tokenEntry is one live token: whose it is and when it dies. It is kept
// small, because there is one per phone that logged in; who the user is and
// their session_key are held once per user, in the loginState it points at.
type tokenEntry struct {
	user     *loginState
	issuedAt int64        // on the monotonic clock (clock.Clock.Elapsed), in nanoseconds
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

// fileUsers is the file user store (internal/users) as a userBackend. The
// store itself is synchronous and in memory, with no use for a context, and
// it answers in its own terms: the adapter is where its records become a
// person's members, and a write it refuses becomes the envelope's 503.
type fileUsers struct{ users *users.Store }

// storeFailedRetry is the Retry-After of a write the store refuses since
// one failed: it takes a restart, which an operator or a supervisor
// watching /healthz makes; meanwhile a load balancer sends the client to
// another instance.
const storeFailedRetry = 5 * time.Second

// storeFailed is the error of a write the file store refused because an
// earlier one failed (or it is closing): status -1, 503 with Retry-After,
// as /healthz answers meanwhile. The cause goes to the log only.
func storeFailed(err error) error {
	if errors.Is(err, journal.ErrWriteFailed) || errors.Is(err, journal.ErrClosed) {
		return &apiError{status: statusInternal, httpCode: http.StatusServiceUnavailable, msg: msgStoreFailed,
			retryAfter: storeFailedRetry, cause: err}
	}
	return err
}

func (f fileUsers) Login(_ context.Context, appID, openID, unionID string) (account.User, bool, error) {
	u, created, err := f.users.Login(appID, openID, unionID)
	return u, created, storeFailed(err)
}

func (f fileUsers) Get(_ context.Context, id int64) (account.User, bool, error) {
	u, ok := f.users.Get(id)
	return u, ok, nil
}

func (f fileUsers) Update(_ context.Context, id int64, change func(u *account.User)) (account.User, error) {
	u, err := f.users.Update(id, change)
	return u, storeFailed(err)
}

func (f fileUsers) Person(_ context.Context, id int64) (account.User, []account.Member, bool, error) {
	u, members, ok := f.users.Members(id)
	return u, members, ok, nil
}

func (f fileUsers) Claim(_ context.Context, id int64, name string) (account.Claim, bool, error) {
	c, taken, err := f.users.Claim(id, name)
	return c, taken, storeFailed(err)
}

func (f fileUsers) ClaimsOf(_ context.Context, id int64) ([]account.Claim, error) {
	return f.users.ClaimsOf(id), nil
}

func (f fileUsers) Erase(_ context.Context, id int64) (account.Erasure, error) {
	r, err := f.users.Erase(id)
	return r, storeFailed(err)
}

// fileUsers is the file store's eventLog, and webhook.Source, too, with
// -events.
func (f fileUsers) Events(_ context.Context, after int64, limit int) ([]events.Event, error) {
	return f.users.Events(after, limit), nil
}

func (f fileUsers) Delivered(context.Context) (int64, error) { return f.users.Delivered(), nil }

func (f fileUsers) SetDelivered(_ context.Context, seq int64) error {
	return storeFailed(f.users.SetDelivered(seq))
}

// HoldDelivery: one wxlogin owns a data directory, so it delivers alone.
func (f fileUsers) HoldDelivery(context.Context, string, time.Duration) (bool, error) {
	return true, nil
}

func (f fileUsers) Recorded() <-chan struct{} { return f.users.Recorded() }

func (f fileUsers) Health(context.Context) error { return storeFailed(f.users.WriteFailure()) }

// memoryTokens is the token store as a tokenBackend; it reads the user
// store to tell a login that raced an account deletion.
type memoryTokens struct {
	*tokenStore
	users *users.Store
}

func (m memoryTokens) Issue(_ context.Context, who account.Identity, key string) (string, error) {
	token := m.tokenStore.issue(who, key)
	if !m.users.Exists(who.UserID) {
		// The account was deleted while this login ran (on another
		// device): the deletion may have revoked the user's tokens before
		// this one was issued, so it is revoked here.
		m.tokenStore.revoke(account.Caller{Hash: account.HashToken(token)})
		return "", fmt.Errorf("user %d was deleted during the login: %w", who.UserID, account.ErrNoUser)
	}
	return token, nil
}

// Lifetime is the token store's lifetime of a fresh token.
func (m memoryTokens) Lifetime() time.Duration { return m.tokenStore.lifetime() }

func (m memoryTokens) Lookup(_ context.Context, token string) (account.Caller, bool, error) {
	who, ok := m.tokenStore.lookup(token)
	return who, ok, nil
}

func (m memoryTokens) Revoke(_ context.Context, who account.Caller) error {
	m.tokenStore.revoke(who)
	return nil
}

func (m memoryTokens) RevokeUser(_ context.Context, id int64) (int, error) {
	return m.tokenStore.revokeUser(id), nil
}

// The sweeper frees what the token store no longer needs: expired tokens,
// and the login state of users none of them can use, every minute while
// wxlogin runs.

// sweep frees expired tokens and the login state of users no live token
// can need, and reports how many tokens it removed; it keeps the count of
// those left alive for the metrics. A session key is stored
// at every issue, so all of a user's tokens were issued no later than their
// newest key was stored, and all are dead once maxAge has passed since then.
func (s *tokenStore) sweep() int {
	now := s.monotonic()
	removed, live := 0, 0
	s.tokens.Range(func(k, v any) bool {
		switch {
		case s.alive(v.(*tokenEntry), now):
			live++
		case s.tokens.CompareAndDelete(k, v):
			removed++
		}
		return true
	})
	s.liveAtSweep.Store(int64(live))
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, state := range s.users {
		k := state.key.Load()
		switch {
		case now >= k.storedAt+int64(s.maxAge):
			delete(s.users, id)
		case k.previous != nil && !k.previousInWindow(now):
			// The replaced key's window has closed: forget it.
			state.key.CompareAndSwap(k, &sessionKey{key: k.key, storedAt: k.storedAt})
		}
	}
	return removed
}

// runSweeper sweeps at once (tokens reloaded at a start may have expired
// meanwhile) and then every interval, until ctx ends.
func (s *tokenStore) runSweeper(ctx context.Context, every time.Duration) {
	s.sweep()
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
