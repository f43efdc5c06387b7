// Package users is wxlogin's file user store: the users of each mini
// program, the persons their unionids make of them, and the one-time
// benefits a person claims, in the data directory. Reads are served from
// memory; every write returns only once its line is durable in the store's
// journal (internal/journal), which is all the store knows of files.
//
// A user who asks is erased (erase.go): what is kept of them is only what
// stops their person from taking a benefit twice. The store's lines
// (lines.go) are the format of its journal, its snapshots, its backups and
// wxlogin export; they are also the one door by which the tools come in
// (tools.go): a store read as lines and counted, a new store made of lines,
// and the repair of a damaged one. The handlers hold the store through the
// root's userBackend, which the root's fileUsers adapts it to.
package users

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/journal"
	"wxlogin/internal/strictjson"
)

// Store is the durable store of users and their claims. Its methods are
// synchronous and safe for concurrent use.
type Store struct {
	now     func() time.Time
	journal *journal.Journal
	// storedMeta is what the store's newest file records of it (Meta);
	// set for a store read from a backup or a repair too, which have no
	// journal.
	storedMeta json.RawMessage

	mu      sync.Mutex // guards the fields below, and the order of appends to journal
	byRef   map[account.Ref]*account.User
	byID    []*account.User    // byID[id-1]: ids are assigned densely, in journal order
	byUnion map[string][]int64 // unionid → the ids of the records that share it, ascending
	claims  map[int64][]*Claim
	line    []byte // the line being appended, reused

	// Account deletion (erase.go): the ids of erased users, whose places in
	// byID are nil, and the claims they made, by person.
	erasedAt  map[int64]time.Time
	kept      map[string][]*KeptClaim
	aliases   map[string]int64   // an erased user's app's and openid's hash → a record of its person
	aliasesOn map[int64][]string // the hashes aliases leads to each record
	personKey []byte
	events    eventLog // events.go

	// erasedInFiles is set by a replay that found an erased user's record
	// still in the files: the compaction the erasure asked for never
	// finished (a crash, a failed snapshot).
	erasedInFiles bool
	// erasedAgain, during a replay, is the erased users a line is about
	// that came after their erasure: a batch that went into a snapshot and
	// is replayed again after it, whose erasure line is still to come.
	erasedAgain map[int64]bool
}

// Open loads the user store in dir, creating dir if needed, for a server:
// meta is what the server's configuration says of the store. A
// store created in the other mode is refused: in mock mode anyone can log
// in as a user of any name, and none of those users may reach real mode.
// synced, when set, is told of each fsync of a write (the metrics).
func Open(dir string, meta account.Meta, now func() time.Time, log *slog.Logger, synced func(time.Duration, error)) (*Store, error) {
	metaJSON, _ := json.Marshal(meta) // Cannot fail: plain data.
	s, err := load(dir, journal.Options{Meta: metaJSON, Log: log, Synced: synced}, now)
	if err != nil {
		return nil, err
	}
	stored, err := s.Meta()
	switch {
	case err != nil:
		err = fmt.Errorf("open user store: %w", err)
	case stored.Mode != "" && stored.Mode != meta.Mode:
		err = fmt.Errorf("open user store: %s was created in %s mode, and wxlogin is in %s mode. "+
			"Users made up in mock mode must never reach real mode, nor real users the fake: "+
			"give this mode a data directory of its own (-data / WXLOGIN_DATA)", dir, stored.Mode, meta.Mode)
	case stored.Mode == "" && s.Count() > 0:
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

// load replays the user store's journal in dir.
func load(dir string, opts journal.Options, now func() time.Time) (*Store, error) {
	s := &Store{now: now}
	opts.Snapshot = s.Lines
	j, err := journal.Open(dir, "users", opts)
	if err != nil {
		return nil, fmt.Errorf("open user store: %w", err)
	}
	// A record takes about 240 bytes on disk, counting the journal lines a
	// snapshot has not absorbed yet. Sizing the maps now, a little over,
	// rather than growing them by doubling, saves rehashing (BENCHMARKS.md,
	// start-up).
	s.makeIndexes(int(j.StoredBytes() / 210))
	s.erasedAgain = map[int64]bool{}
	err = journal.Replay(j, ParseLine, s.replay)
	if err == nil {
		err = s.erasedAgainError()
	}
	s.erasedAgain = nil
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open user store: %w", err), j.Close())
	}
	s.journal, s.storedMeta = j, j.StoredMeta()
	return s, nil
}

// makeIndexes makes the store's maps for about expected users.
func (s *Store) makeIndexes(expected int) {
	s.byRef = make(map[account.Ref]*account.User, expected)
	s.byUnion = make(map[string][]int64, expected)
	s.byID = make([]*account.User, 0, expected)
	s.claims = map[int64][]*Claim{}
	s.erasedAt = map[int64]time.Time{}
	s.kept = map[string][]*KeptClaim{}
	s.aliases, s.aliasesOn = map[string]int64{}, map[int64][]string{}
	s.events.recorded = make(chan struct{}, 1)
}

// Census counts the store's users, the persons they are, and their claims.
func (s *Store) Census() (users, persons, claims int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.byID {
		if u == nil {
			continue // erased
		}
		claims += len(s.claims[u.ID])
		if s.personLocked(u)[0] == u.ID { // a person is counted at its first record
			persons++
		}
	}
	return len(s.byRef), persons, claims
}

// Meta is what the store's newest file records of it, zero for files of
// the earlier format.
func (s *Store) Meta() (account.Meta, error) {
	var m account.Meta
	if s.storedMeta == nil {
		return m, nil
	}
	if err := strictjson.Decode(s.storedMeta, &m); err != nil {
		return m, fmt.Errorf("the store's files record %s, not what a user store records of itself", s.storedMeta)
	}
	return m, nil
}

// replayedAfterErasure reports whether a line about erased user id may
// be one replayed twice: one of the batch that a snapshot holds the effect
// of, its erasure included, replayed again from the journal after it. The
// line is then skipped; the user's erasure must come further on
// (erasedAgain, checked at the end of the replay), and the compaction
// the erasure asked for is made again, the line being in the files.
func (s *Store) replayedAfterErasure(id int64) bool {
	if s.erasedAgain == nil {
		return false // not a replay of the journal
	}
	s.erasedAgain[id] = true
	s.erasedInFiles = true
	return true
}

// erasedAgainError is the error of a replay that met a line about an
// erased user (replayedAfterErasure) with no erasure after it: not a batch
// replayed twice, but damage.
func (s *Store) erasedAgainError() error {
	if len(s.erasedAgain) == 0 {
		return nil
	}
	return fmt.Errorf("user %d: a line about it after its erasure, and no erasure after that", slices.Min(slices.Collect(maps.Keys(s.erasedAgain))))
}

// replay puts a stored line in memory, enforcing the store's invariants:
// ids are dense and in order, one (appid, openid) has one id, a claim's
// user is stored before it, and one record never claims one name twice.
// Lines may be replayed twice (see internal/journal): a record replaces itself,
// and a claim made at the same moment is the same claim.
func (s *Store) replay(l Line) error {
	if l.Event != nil || l.Cursor != nil {
		return s.replayEvent(l)
	}
	if l.User == nil && l.Claim == nil {
		return s.replayErasure(l)
	}
	if c := l.Claim; c != nil {
		if c.UserID > int64(len(s.byID)) || s.byID[c.UserID-1] == nil && !s.replayedAfterErasure(c.UserID) {
			return fmt.Errorf("claim %q names user %d, who is not stored before it", c.Name, c.UserID)
		}
		if s.byID[c.UserID-1] == nil {
			return nil // erased again further on
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
	u := l.User
	switch n := int64(len(s.byID)); {
	case u.ID == n+1:
		if other, ok := s.byRef[u.Ref()]; ok {
			return fmt.Errorf("user %d duplicates user %d (appid %s, openid %s)", u.ID, other.ID, u.AppID, u.OpenID)
		}
	case u.ID <= n:
		if s.byID[u.ID-1] == nil {
			if s.replayedAfterErasure(u.ID) {
				return nil // erased again further on
			}
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

// Lines copies the store's content and returns it as lines, as the
// journal's snapshot holds them (and a backup, and wxlogin export): every
// user (or, for an erased one, the erasure), then every claim, so that each
// claim names a user stored before it, then the claims erased users made,
// then the events kept (events.go).
// Records and claims are immutable, so the copy can be written out while
// writes go on. The lines are the store's interchange format (ParseLine,
// Create); a line yielded is only valid until the next.
func (s *Store) Lines() iter.Seq[[]byte] {
	s.mu.Lock()
	users := slices.Clone(s.byID)
	erasedAt := maps.Clone(s.erasedAt)
	var claims []*Claim
	for _, u := range users {
		if u != nil {
			claims = append(claims, s.claims[u.ID]...)
		}
	}
	kept := s.keptLinesLocked()
	keptEvents, cursor, anyEvents, eventsRead := s.keptEventsLocked(s.now())
	s.mu.Unlock()
	var once sync.Once
	return func(yield func([]byte) bool) {
		defer once.Do(eventsRead)
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
		for i := range keptEvents {
			if line = eventLine(line[:0], &keptEvents[i]); !yield(line) {
				return
			}
		}
		if anyEvents {
			yield(cursorLine(line[:0], cursor))
		}
	}
}

// WriteFailure is why the store refuses writes after a failed one, or nil.
func (s *Store) WriteFailure() error { return s.journal.WriteFailure() }

// WriteBackup writes the store as it is now to w, in a snapshot's format,
// every line of it durable before the first byte goes out; writes go on
// meanwhile. A backup cut short has no trailer, so ReadBackup refuses it.
func (s *Store) WriteBackup(w io.Writer) error { return s.journal.WriteBackup(w) }

// Close closes the journal and waits for a snapshot being written. Writes
// after Close fail. It returns an error if a write had failed before: the
// store took no write since, and the operator must know.
func (s *Store) Close() error {
	if s.journal == nil {
		return nil // read from a backup, or a repair: no files
	}
	if err := s.journal.Close(); err != nil {
		return fmt.Errorf("close user store: %w", err)
	}
	return nil
}

// Login records a login of (appID, openID): it creates the user the first
// time, and otherwise updates last_login_at and a newly learned unionid. It
// returns once the record is durable, and reports whether it was created.
// Exactly one of any number of concurrent first logins creates the user.
func (s *Store) Login(appID, openID, unionID string) (account.User, bool, error) {
	now, err := s.stamp(time.Second)
	if err != nil {
		return account.User{}, false, err
	}
	if err := s.lockForWrite(); err != nil {
		return account.User{}, false, err
	}
	old, found := s.byRef[account.Ref{AppID: appID, OpenID: openID}]
	var u *account.User
	if found {
		updated := *old
		if updated.SetUnionID(unionID) {
			updated.UpdatedAt = now
		} else if account.LastLoginFresh(old.LastLoginAt, now) {
			// Nothing to write: the record stands as it is, once the batch
			// that wrote it is durable (a concurrent first login's may not be).
			s.mu.Unlock()
			if err := s.journal.Settle(); err != nil {
				return account.User{}, false, err
			}
			return updated, false, nil
		}
		updated.LastLoginAt = now
		u = &updated
	} else {
		u = &account.User{
			ID: int64(len(s.byID)) + 1, AppID: appID, OpenID: openID, UnionID: unionID,
			CreatedAt: now, UpdatedAt: now, LastLoginAt: now,
		}
		s.rejoinLocked(u)
	}
	b, seq := s.putLocked(old, u, now)
	s.mu.Unlock()

	// A concurrent first login that found the record above still waits here,
	// for a batch no earlier than the creating one: batches are written in
	// order, so nobody is told about a user before the user is durable.
	if err := s.journal.Wait(b); err != nil {
		return account.User{}, false, err
	}
	s.madeDurable(seq)
	return *u, !found, nil
}

// Update applies change to a copy of user id's record and stores it,
// returning once it is durable. A change that leaves the record as it was
// writes nothing. change must only set fields; it runs under the store's lock.
func (s *Store) Update(id int64, change func(u *account.User)) (account.User, error) {
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
	b, seq := s.putLocked(old, &u, now)
	s.mu.Unlock()
	if err := s.journal.Wait(b); err != nil {
		return account.User{}, err
	}
	s.madeDurable(seq)
	return u, nil
}

// stamp is the time a write records, in UTC to the given precision. A clock
// outside the years a record can hold is an error here, before the store
// changes anything: the record writer must never meet such a time.
func (s *Store) stamp(precision time.Duration) (time.Time, error) {
	t := s.now().UTC().Truncate(precision)
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("user store: the clock reads %v, outside the years a record holds", t)
	}
	return t, nil
}

// lockForWrite takes s.mu for a write, unless the store refuses writes
// (after a failed write, or Close): then it returns why, without the lock.
func (s *Store) lockForWrite() error {
	s.mu.Lock()
	if err := s.journal.Err(); err != nil {
		s.mu.Unlock()
		return err
	}
	return nil
}

// recordLocked is user id's record, or nil if there is none. s.mu is held.
func (s *Store) recordLocked(id int64) *account.User {
	if id < 1 || id > int64(len(s.byID)) {
		return nil
	}
	return s.byID[id-1]
}

// putLocked makes u the current record of its user, in place of old (nil
// for a new user), and appends it to the journal, with the events of the
// change at at when the store records them (events.go): one Append, so one
// batch holds them all. It returns the batch to wait for and the seq of
// the last event, 0 for none. s.mu is held; records are never changed once
// put, only replaced.
func (s *Store) putLocked(old, u *account.User, at time.Time) (*journal.Batch, int64) {
	var previous []int64 // the persons u's unionids bring together, when they change
	switch {
	case !s.events.record:
	case old != nil && old.UnionID != u.UnionID:
		previous = s.personsOfLocked(old, u.UnionID)
	case old == nil && u.UnionID != "" && u.PreviousUnionIDs != "":
		// A new user back in its erased user's person with another
		// unionid (rejoinLocked): a person of that unionid becomes one
		// with it, as Redis tells it (markLinked).
		if ids := s.byUnion[u.UnionID]; len(ids) > 0 {
			previous = []int64{s.personIDLocked(s.byID[ids[0]-1])}
		}
	}
	s.setLocked(u)
	s.line = appendRecord(s.line[:0], u)
	var seq int64
	if s.events.record {
		s.line, seq = s.appendEventsLocked(s.line, events.Of(at, old, u, s.personIDLocked(u), previous))
	}
	return s.journal.Append(s.line), seq
}

// setLocked makes u the record of its id, appending a new id (or filling
// one a repair found lost), and keeps the unionid index in step: a record
// is indexed under every unionid it has had. s.mu is held, or the store is
// being opened.
func (s *Store) setLocked(u *account.User) {
	if u.ID > int64(len(s.byID)) {
		s.byID = append(s.byID, u)
	} else {
		old := s.byID[u.ID-1]
		if old != nil && (old.UnionID != u.UnionID || old.PreviousUnionIDs != u.PreviousUnionIDs) {
			s.unlinkUnionLocked(old)
		}
		s.byID[u.ID-1] = u
	}
	s.byRef[u.Ref()] = u
	for _, union := range u.UnionIDs() {
		ids := s.byUnion[union]
		if i, found := slices.BinarySearch(ids, u.ID); !found {
			s.byUnion[union] = slices.Insert(ids, i, u.ID)
		}
	}
}

// unlinkUnionLocked takes u out of the index of each unionid it has had.
// s.mu is held, or the store is being opened.
func (s *Store) unlinkUnionLocked(u *account.User) {
	for _, union := range u.UnionIDs() {
		ids := slices.DeleteFunc(s.byUnion[union], func(id int64) bool { return id == u.ID })
		if len(ids) == 0 {
			delete(s.byUnion, union)
		} else {
			s.byUnion[union] = ids
		}
	}
}

// Get returns the user with the given id.
func (s *Store) Get(id int64) (account.User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.recordLocked(id)
	if u == nil {
		return account.User{}, false
	}
	return *u, true
}

// Exists reports whether user id is stored (not erased).
func (s *Store) Exists(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recordLocked(id) != nil
}

// Identity returns who user id is. Its strings are the record's own: a copy
// of a string shares its bytes.
func (s *Store) Identity(id int64) (account.Identity, bool) {
	u, ok := s.Get(id)
	return account.Identity{AppID: u.AppID, OpenID: u.OpenID, UserID: u.ID}, ok
}

// Count reports how many users are stored (erased ones are not).
func (s *Store) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byRef)
}

// personLocked returns the ids of the records that are one person with
// user u: those sharing a unionid with it, now or before, and those
// sharing one with them in turn; u alone if it never had one. Ascending, so
// the first is the person's id. s.mu is held.
func (s *Store) personLocked(u *account.User) []int64 {
	if u.UnionID == "" && u.PreviousUnionIDs == "" {
		return []int64{u.ID}
	}
	if u.PreviousUnionIDs == "" {
		// Mostly, each record of the person has one unionid, the same.
		ids := s.byUnion[u.UnionID]
		if !slices.ContainsFunc(ids, func(id int64) bool { return s.byID[id-1].PreviousUnionIDs != "" }) {
			return ids
		}
	}
	var ids []int64
	seen, found := map[string]bool{}, map[int64]bool{}
	for unions := u.UnionIDs(); len(unions) > 0; {
		union := unions[0]
		unions = unions[1:]
		if seen[union] {
			continue
		}
		seen[union] = true
		for _, id := range s.byUnion[union] {
			if !found[id] {
				found[id] = true
				ids = append(ids, id)
				unions = append(unions, s.byID[id-1].UnionIDs()...)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// personHashesLocked are the hashes the kept claims of user u's person may
// be kept under (erase.go): one for each unionid its records have had, and
// each record's app's and openid's, under which an erased user who had no
// unionid kept its claims: the same user in that app, back, who learns a
// unionid, is still that person. s.mu is held, and the key made.
func (s *Store) personHashesLocked(u *account.User) []string {
	var hashes []string
	for _, id := range s.personLocked(u) {
		r := s.byID[id-1]
		for _, union := range r.UnionIDs() {
			hashes = append(hashes, account.PersonHash(s.personKey, r.AppID, r.OpenID, union)) // a unionid's hash is the same in every app
		}
		hashes = append(hashes, account.PersonHash(s.personKey, r.AppID, r.OpenID, ""))
	}
	slices.Sort(hashes)
	return slices.Compact(hashes)
}

// Person returns the records of user id's person, the first being the
// person's earliest, whose id is the person's id.
func (s *Store) Person(id int64) ([]account.User, bool) {
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

// Members is user id's record and its person's records, as members: what
// Person gives, without copying every record.
func (s *Store) Members(id int64) (account.User, []account.Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.recordLocked(id)
	if u == nil {
		return account.User{}, nil, false
	}
	ids := s.personLocked(u)
	members := make([]account.Member, len(ids))
	for i, pid := range ids {
		members[i] = account.Member{ID: pid, AppID: s.byID[pid-1].AppID}
	}
	return *u, members, true
}

// Claim is a one-time benefit a person took, stored as a line of its own,
// through the user record it was claimed with.
type Claim struct {
	Name   string    `json:"name"`
	UserID int64     `json:"user_id"`
	At     time.Time `json:"at"`
}

func (s *Store) viewClaim(c *Claim) account.Claim {
	return account.Claim{Name: c.Name, AppID: s.byID[c.UserID-1].AppID, UserID: c.UserID, ClaimedAt: c.At}
}

// findClaimLocked returns the person's earliest claim of name, or nil.
// Two records can hold one name when a unionid learned later joined them
// into one person; the earliest claim is the one that counts.
func (s *Store) findClaimLocked(person []int64, name string) *Claim {
	var found *Claim
	for _, id := range person {
		for _, c := range s.claims[id] {
			if c.Name == name && (found == nil || c.At.Before(found.At)) {
				found = c
			}
		}
	}
	return found
}

// Claim claims name for user id's person, exactly once: it returns the new
// claim once it is durable, or with taken true the person's earlier claim
// of that name. Of concurrent claims of one name by one person, from any of
// their apps, exactly one is new.
func (s *Store) Claim(id int64, name string) (c account.Claim, taken bool, err error) {
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
	var seq int64
	if taken {
		// The earlier claim may still be on its way to disk: waiting for
		// everything appended so far means nobody is told "already claimed"
		// about a claim that is not durable.
		b = s.journal.Barrier()
	} else {
		rec := &Claim{Name: name, UserID: id, At: now}
		s.claims[id] = append(s.claims[id], rec)
		s.line = appendClaim(s.line[:0], rec)
		if s.events.record {
			s.line, seq = s.appendEventsLocked(s.line, []events.Event{events.Claimed(now, u, s.personIDLocked(u), name)})
		}
		b = s.journal.Append(s.line)
		c = s.viewClaim(rec)
	}
	s.mu.Unlock()
	if err := s.journal.Wait(b); err != nil {
		return account.Claim{}, false, err
	}
	s.madeDurable(seq)
	return c, taken, nil
}

// earliestClaimLocked is user u's person's earliest claim of name, among
// their records' and, if one of them was erased, the claims kept of it
// (erase.go). s.mu is held.
func (s *Store) earliestClaimLocked(u *account.User, name string) (account.Claim, bool) {
	rec := s.findClaimLocked(s.personLocked(u), name)
	if k := s.keptClaimLocked(u, name); k != nil && (rec == nil || k.At.Before(rec.At)) {
		return account.Claim{Name: k.Name, AppID: k.AppID, UserID: k.UserID, ClaimedAt: k.At}, true
	}
	if rec == nil {
		return account.Claim{}, false
	}
	return s.viewClaim(rec), true
}

// ClaimsOf lists user id's person's claims, the earliest of each name, in
// the order they were made.
func (s *Store) ClaimsOf(id int64) []account.Claim {
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
		for _, person := range s.personHashesLocked(u) {
			for _, k := range s.kept[person] {
				names[k.Name] = true
			}
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
