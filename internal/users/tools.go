package users

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/journal"
)

// This file is the user store's side of the tools that look after a data
// directory (wxlogin check, export, backup, restore, repair, to-redis and
// from-redis): the one door they come in by.
// They read a store as lines, the format of its snapshots and of wxlogin
// export, and a census of what it holds; they make a new store of lines;
// and a repair reads what can be kept of a damaged store, says what it
// corrects, drops and keeps unused, and writes the rest in place of the
// damaged files. No tool holds the store's lock or reads its maps.

// Inspect loads the user store in dir as it is, with every check a
// start-up makes but changing nothing on disk, for the tools to read; it
// takes no writes. It returns what a start-up would repair of the files
// (the debris of a crash), as notes.
func Inspect(dir string) (*Store, []string, error) {
	s, err := load(dir, journal.Options{ReadOnly: true, Log: slog.New(slog.DiscardHandler)}, time.Now)
	if err != nil {
		return nil, nil, err
	}
	return s, s.journal.Notes(), nil
}

// newMemoryStore is an empty store with no files, for the tools to
// read a store into; it takes no writes.
func newMemoryStore() *Store {
	s := &Store{now: time.Now}
	s.makeIndexes(0)
	return s
}

// ReadBackup reads a backup file (WriteBackup) into a store in memory,
// with every check a start-up makes; it takes no writes.
func ReadBackup(path string) (*Store, error) {
	s := newMemoryStore()
	meta, err := journal.ReplaySnapshot(path, "users", ParseLine, s.replay)
	if err != nil {
		return nil, err
	}
	s.storedMeta = meta
	return s, nil
}

// KeepIDsUnused keeps the next n ids unused, as erased ids (erased at
// at), and as many events' seqs, in a store read from a backup
// (ReadBackup): the store it was taken of may have gone on past it, and its
// users made since may be named elsewhere (a receiver's events, another
// service's copy, a JWT), each id and seq once only. It answers the first
// and last id kept, none (first > last) for n 0.
func (s *Store) KeepIDsUnused(n int64, at time.Time) (first, last int64) {
	first = int64(len(s.byID)) + 1
	for range n {
		s.byID = append(s.byID, nil)
		s.erasedAt[int64(len(s.byID))] = at.UTC().Truncate(time.Millisecond)
	}
	// Also with no event in the backup: the server may have recorded its
	// first since, with -events turned on, or the store's first changes.
	s.events.last += n
	return first, int64(len(s.byID))
}

// Create makes a new store in dir, which must hold none, of lines, in the
// format Lines gives them (or in any order that gives users and erasures
// in id order, each user before their claims, and the person key before
// the claims kept): each is checked as a
// start-up checks it, and the files hold a snapshot of what they make, in
// a snapshot's order. meta is what the store records of itself; a zero
// meta records nothing, as files of the earlier format did.
func Create(dir string, meta account.Meta, lines iter.Seq[[]byte]) error {
	s := newMemoryStore()
	n := 0
	for line := range lines {
		n++
		l, err := ParseLine(line)
		if err == nil {
			err = s.replay(l)
		}
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	var metaJSON json.RawMessage
	if meta.Mode != "" || meta.AppIDs != nil {
		metaJSON, _ = json.Marshal(meta) // Cannot fail: plain data.
	}
	return journal.Create(dir, "users", metaJSON, s.Lines())
}

// Repair is what a repair of a damaged store keeps, and what it
// corrects, drops and keeps unused, for the operator to read before any of
// it is written.
type Repair struct {
	Corrected []string // lines a flipped bit is corrected in, each with where
	Dropped   []string // lines dropped, or files lost, each with why
	// Notes are what the store's own invariants drop (a claim whose user
	// is lost) and the ids it keeps unused.
	Notes []string
	Kept  *Store // what is kept, in memory, recording of itself what the damaged files did
}

// Salvage reads what a repair of the damaged store in dir keeps:
// every line that checks out (a line one flipped bit away from it
// corrected), less what contradicts the lines before it or cannot stand
// without a line dropped; and the ids that stay unused, erased at now. It
// changes nothing.
func Salvage(dir string, now time.Time) (*Repair, error) {
	j, err := journal.Open(dir, "users", journal.Options{ReadOnly: true, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	salvaged := newSalvagedStore()
	rep := journal.Salvage(j, ParseLine, salvaged.apply, salvaged.lostLine)
	notes := salvaged.finish(rep, now)
	salvaged.storedMeta = rep.Meta
	return &Repair{Corrected: rep.Corrected, Dropped: rep.Dropped, Notes: notes, Kept: salvaged.Store}, nil
}

// Replace writes what r keeps as the store in dir, in place of its damaged
// files, so that a crash at any moment leaves the damaged store, which a
// start-up refuses as before, the repaired one, or the repaired one with
// the damaged store's watermark, which a start-up refuses too and a repair
// run again repairs, giving no id twice (journal.Journal.ReplaceWith).
func (r *Repair) Replace(dir string) error {
	j, err := journal.Open(dir, "users", journal.Options{Meta: r.Kept.storedMeta, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	return j.ReplaceWith(r.Kept.Lines())
}

// idMargin is how many ids a repair keeps unused past the highest it can
// count when the watermark is missing or unreadable: users cut from the end
// of the newest journal then cannot be counted, and their ids must never
// go to someone else.
const idMargin = 1000

// salvagedStore is a store read from a damaged one's files, as a repair
// keeps it. Where a line was dropped, ids may skip: an id whose user's
// record is lost stays unused, kept as an erased id, for an id once given
// belongs to one user forever. A later line of the same user brings the
// record back, and the user's claims with it.
type salvagedStore struct {
	*Store
	lost    map[int64]bool // ids with no record kept (yet)
	pending []*Claim       // claims naming a user not kept (yet)
	// pendingAliases are the aliases naming a user not kept (yet).
	pendingAliases []*Alias
	// uncounted is how many dropped lines may each have given an id no
	// line kept names: a user's, an erasure's, one whose text is unreadable.
	uncounted int64
}

func newSalvagedStore() *salvagedStore {
	return &salvagedStore{Store: newMemoryStore(), lost: map[int64]bool{}}
}

// apply puts a line that checks out in the store, as replay does, but
// lets ids skip, and a user whose record was lost come back.
func (s *salvagedStore) apply(l Line) error {
	switch {
	case l.User != nil:
		u := l.User
		s.skipTo(u.ID - 1)
		if s.lost[u.ID] {
			if other, ok := s.byRef[u.Ref()]; ok {
				return fmt.Errorf("user %d duplicates user %d (appid %s, openid %s)", u.ID, other.ID, u.AppID, u.OpenID)
			}
			delete(s.lost, u.ID)
			s.setLocked(u)
			return nil
		}
	case l.Erased != nil:
		s.skipTo(l.Erased.UserID - 1)
		delete(s.lost, l.Erased.UserID)
	case l.Claim != nil:
		if id := l.Claim.UserID; id > int64(len(s.byID)) || s.byID[id-1] == nil {
			s.pending = append(s.pending, l.Claim) // until a later line brings its user back
			return nil
		}
	case l.Alias != nil:
		if id := l.Alias.UserID; s.personKey != nil && (id > int64(len(s.byID)) || s.byID[id-1] == nil) {
			s.pendingAliases = append(s.pendingAliases, l.Alias) // as a claim: the way back to a person's claims
			return nil
		}
	}
	return s.replay(l)
}

// skipTo makes room for ids up to n, those not stored lost.
func (s *salvagedStore) skipTo(n int64) {
	for int64(len(s.byID)) < n {
		s.byID = append(s.byID, nil)
		s.lost[int64(len(s.byID))] = true
	}
}

// lostLine notes a dropped line's text: whether it may have given an id.
// Each line gives one id at most, in order, so past the ids the lines kept
// name, at most one for each line dropped or missing is given; a line
// dropped for its damage cannot be trusted to say which.
func (s *salvagedStore) lostLine(text []byte) {
	switch {
	case bytes.HasPrefix(text, claimLinePrefix), bytes.HasPrefix(text, []byte(keptPrefix)), bytes.HasPrefix(text, []byte(personKeyPrefix)),
		bytes.HasPrefix(text, []byte(aliasPrefix)):
		// Gives no id.
	default:
		s.uncounted++
	}
}

// finish applies the claims whose users came back, and keeps every id that
// may have been given unused: each one with no record kept, and past the
// last one kept, one for each dropped line that may have given one and for
// each line the watermark says is missing. It returns what it kept unused and
// dropped, for the repair to say.
func (s *salvagedStore) finish(rep journal.Report, now time.Time) []string {
	var notes []string
	for _, c := range s.pending {
		err := fmt.Errorf("the user's record is lost")
		if s.recordLocked(c.UserID) != nil {
			err = s.replay(Line{Claim: c})
		}
		if err != nil {
			notes = append(notes, fmt.Sprintf("drops the claim %q of user %d: %v", c.Name, c.UserID, err))
		}
	}
	s.pending = nil
	for _, a := range s.pendingAliases {
		switch _, later := s.aliases[a.Hash]; {
		case later:
			// Handed on by a later line, its user's erasure's.
		case !s.erasedAt[a.UserID].IsZero():
			// Its user erased further on, which took it away.
		case s.recordLocked(a.UserID) == nil:
			notes = append(notes, fmt.Sprintf("drops an alias naming user %d: the user's record is lost", a.UserID))
		default:
			s.aliasLocked(a)
		}
	}
	s.pendingAliases = nil
	top := int64(len(s.byID)) + s.uncounted + rep.Missing
	if rep.Uncounted {
		top += idMargin
	}
	s.skipTo(top)
	ids := slices.Sorted(maps.Keys(s.lost))
	for _, id := range ids {
		s.erasedAt[id] = now.UTC().Truncate(time.Millisecond)
	}
	if len(ids) > 0 {
		notes = append(notes, fmt.Sprintf("keeps %s unused (as erased ids): users whose lines are dropped or missing may have held them, and an id is never given twice", idRanges(ids)))
	}
	return notes
}

// idRanges says which ids ids, ascending, are: "id 5", "ids 5, 7–9".
func idRanges(ids []int64) string {
	var parts []string
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.FormatInt(ids[i], 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d–%d", ids[i], ids[j]))
		}
		i = j + 1
	}
	if len(ids) == 1 {
		return "id " + parts[0]
	}
	return "ids " + strings.Join(parts, ", ")
}
