package users

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/strictjson"
)

// This file is account deletion (注销账号): a user who asks is erased from
// the user store, in memory at once and on disk by the compaction the
// erasure starts, a snapshot never holding an erased user's data. What is
// kept is what stops a returning person from taking a one-time benefit
// twice: the names of their claims, under a keyed hash of who they were
// (their unionid, or their app and openid where they have none), never the
// unionid or openid itself. A claim is found under each other hash of the
// user too: each unionid it had before its app moved to another Open
// Platform account, and its app's and openid's, for the same user back in
// that app without one. The key is the store's own, kept in its files,
// so that a copy of the files alone names nobody to someone without them.
//
// A user erased while its person has other records (the same unionid in
// another app) may have made no claim itself, while the others did and
// will: its app's and openid's hash is kept as an alias of one of those
// records, so that the same user back in its app without its unionid, or
// with another (its app moved to another Open Platform account), joins its
// person again (Login) and finds every claim the person made, as Redis
// joins it (redislink.go, aliasErased). The alias passes to another record
// of the person when that record is erased, and to the kept claims' other
// hashes when none is left; a claim the person found only through the
// erased user (kept of the same openid's earlier user) is kept under the
// hashes of its unionids too, which the person's other records share.
//
// The journal's lines for this:
//
//	{"person_key":"…"}                                               the key, once, before any kept claim
//	{"kept":{"person":"…","also":["…"],"name":"…","appid":"…","user_id":5,"at":"…"}}  a claim of an erased user
//	{"alias":{"hash":"…","user_id":7}}                               an erased user's app's and openid's hash leads to user 7's person
//	{"erased":{"user_id":5,"at":"…"}}                                 user 5 is gone; the id is never given again

// KeptClaim is a claim of an erased user, kept under the person's hash.
type KeptClaim struct {
	Person string `json:"person"` // personHash of who made it
	// Also is the user's other hashes, under which it is found too: each
	// unionid it had before, and its app's and openid's if it had one.
	// Files written before it have none.
	Also   []string  `json:"also,omitempty"`
	Name   string    `json:"name"`
	AppID  string    `json:"appid"`
	UserID int64     `json:"user_id"`
	At     time.Time `json:"at"`
}

// Alias is the line that keeps the hash of an erased user's app and
// openid as the way back to a record of its person, which the same user
// back in that app without a unionid joins. A later alias of the same
// hash replaces it.
type Alias struct {
	Hash   string `json:"hash"`
	UserID int64  `json:"user_id"`
}

// Erased is the line that erases a user: the id is never given again.
type Erased struct {
	UserID int64     `json:"user_id"`
	At     time.Time `json:"at"`
}

// The prefixes of the lines of this file.
const (
	personKeyPrefix = `{"person_key":`
	keptPrefix      = `{"kept":`
	aliasPrefix     = `{"alias":`
	erasedPrefix    = `{"erased":`
)

// parseErasureLine parses a line of this file, or reports false if line is
// not one.
func parseErasureLine(line []byte) (Line, bool, error) {
	var l struct {
		PersonKey string     `json:"person_key"`
		Kept      *KeptClaim `json:"kept"`
		Alias     *Alias     `json:"alias"`
		Erased    *Erased    `json:"erased"`
	}
	switch {
	case bytes.HasPrefix(line, []byte(personKeyPrefix)), bytes.HasPrefix(line, []byte(keptPrefix)),
		bytes.HasPrefix(line, []byte(aliasPrefix)), bytes.HasPrefix(line, []byte(erasedPrefix)):
	default:
		return Line{}, false, nil
	}
	if err := strictjson.Decode(line, &l); err != nil {
		return Line{}, true, fmt.Errorf("not a line of an erasure: %v", err)
	}
	switch {
	case l.PersonKey != "":
		key, err := hex.DecodeString(l.PersonKey)
		if err != nil || len(key) != sha256.Size {
			return Line{}, true, fmt.Errorf("person_key is not %d bytes of hex", sha256.Size)
		}
		return Line{PersonKey: key}, true, nil
	case l.Kept != nil:
		k := l.Kept
		if !isHash(k.Person) || !account.ValidClaimName(k.Name) || k.UserID < 1 || k.At.IsZero() || !all(k.Also, isHash) {
			return Line{}, true, fmt.Errorf("kept claim %q is not whole", k.Name)
		}
		if len(k.Also) == 0 {
			k.Also = nil // "also":[] reads as none, as it is written
		}
		return Line{Kept: k}, true, nil
	case l.Alias != nil:
		if !isHash(l.Alias.Hash) || l.Alias.UserID < 1 {
			return Line{}, true, fmt.Errorf("alias of user %d is not whole", l.Alias.UserID)
		}
		return Line{Alias: l.Alias}, true, nil
	case l.Erased != nil && l.Erased.UserID > 0 && !l.Erased.At.IsZero():
		return Line{Erased: l.Erased}, true, nil
	}
	return Line{}, true, fmt.Errorf("not a line of an erasure")
}

// isHash reports whether h is a person's hash as account.PersonHash writes it.
func isHash(h string) bool {
	_, err := hex.DecodeString(h)
	return err == nil && len(h) == 2*sha256.Size
}

// all reports whether ok holds for every element of list.
func all[T any](list []T, ok func(T) bool) bool {
	return !slices.ContainsFunc(list, func(v T) bool { return !ok(v) })
}

// appendJSONLine appends v as a line, as encoding/json writes it.
func appendJSONLine(buf []byte, v any) []byte {
	line, _ := json.Marshal(v) // Cannot fail: plain data.
	return append(append(buf, line...), '\n')
}

// personHash is who u is, as the kept claims name them: the keyed hash of
// the unionid, one person across the apps of an Open Platform account, or
// of the app and openid for a user with none. s.mu is held, and the key
// made.
func (s *Store) personHash(u *account.User) string {
	return account.PersonHash(s.personKey, u.AppID, u.OpenID, u.UnionID)
}

// otherHashes are the hashes of user u other than personHash(u), under
// which its claims are found once it is erased: one for each unionid it
// had before (a person who comes back in an app still on the Open Platform
// account u's app left), and, if it has a unionid, its app's and openid's
// (the same user back in that app without one). s.mu is held, and the key
// made.
func (s *Store) otherHashes(u *account.User) []string {
	var hashes []string
	for _, union := range u.UnionIDs() {
		if union != u.UnionID {
			hashes = append(hashes, account.PersonHash(s.personKey, u.AppID, u.OpenID, union))
		}
	}
	if u.UnionID != "" {
		hashes = append(hashes, account.PersonHash(s.personKey, u.AppID, u.OpenID, ""))
	}
	slices.Sort(hashes)
	return hashes
}

// keptClaimLocked is the person's earliest kept claim of name, or nil.
// s.mu is held.
func (s *Store) keptClaimLocked(u *account.User, name string) *KeptClaim {
	if len(s.kept) == 0 {
		return nil // no one was ever erased: no hash to make
	}
	var found *KeptClaim
	for _, person := range s.personHashesLocked(u) {
		for _, k := range s.kept[person] {
			if k.Name == name && (found == nil || k.At.Before(found.At)) {
				found = k
			}
		}
	}
	return found
}

// Erase deletes user id: every field of the record, its place in the
// indexes, and its claims, whose names are kept under the person's hash.
// It returns once the erasure is durable, and asks the journal for the
// compaction that takes the user's data off the disk.
func (s *Store) Erase(id int64) (account.Erasure, error) {
	now, err := s.stamp(time.Millisecond)
	if err != nil {
		return account.Erasure{}, err
	}
	if err := s.lockForWrite(); err != nil {
		return account.Erasure{}, err
	}
	u := s.recordLocked(id)
	if u == nil {
		s.mu.Unlock()
		return account.Erasure{}, fmt.Errorf("erase: %w %d", account.ErrNoUser, id)
	}
	// Every line goes into the batch being filled under s.mu, so waiting on
	// the last one waits for them all.
	if s.personKey == nil {
		s.personKey = make([]byte, sha256.Size)
		rand.Read(s.personKey) // Never fails: crypto/rand.Read crashes the program rather than return short.
		s.line = personKeyLine(s.line[:0], s.personKey)
		s.journal.Append(s.line)
	}
	// A user that had several unionids (SetUnionID) may be all that joins
	// the records of one to those of another: they go to another record of
	// the person, which is the same human, so that the person stays one.
	if bridge := s.bridgeLocked(u); bridge != nil {
		s.putLocked(s.byID[bridge.ID-1], bridge, now)
	}
	person, also := s.personHash(u), s.otherHashes(u)
	// The hashes that lead back to the person through u: its app's and
	// openid's, and those of users erased before whose aliases name it,
	// go to another record of the person; with none left, its kept
	// claims are found under them.
	handed := slices.Clone(s.aliasesOn[id])
	if own := account.PersonHash(s.personKey, u.AppID, u.OpenID, ""); own != person {
		handed = append(handed, own)
	}
	if others := slices.DeleteFunc(slices.Clone(s.personLocked(u)), func(o int64) bool { return o == id }); len(others) > 0 {
		s.keepForOthersLocked(u, others)
		for _, hash := range handed {
			a := &Alias{Hash: hash, UserID: others[0]}
			s.aliasLocked(a)
			s.line = aliasLine(s.line[:0], a)
			s.journal.Append(s.line)
		}
	} else if len(handed) > 0 {
		// The person's last record: the claims kept of its records erased
		// before are found under the hashes handed to it and its own app's
		// and openid's too, as its own claims are, whichever record of the
		// person went first (as on Redis, aliasErased); also under a hash
		// that names kept claims of its own (a user back through the alias,
		// which claimed and was erased before this record): the two persons
		// then name each other, which a move to Redis makes one
		// (tools.contentsOf).
		also = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(also), handed...))))
		also = slices.DeleteFunc(also, func(h string) bool { return h == person })
		for _, k := range s.keptOfLocked(u) {
			s.addAlsoLocked(k, handed)
		}
	}
	result := account.Erasure{UserID: id, ClaimsKept: []string{}}
	for _, c := range s.claims[id] {
		k := &KeptClaim{Person: person, Also: also, Name: c.Name, AppID: u.AppID, UserID: id, At: c.At}
		s.keepLocked(k)
		s.line = keptLine(s.line[:0], k)
		s.journal.Append(s.line)
		result.ClaimsKept = append(result.ClaimsKept, c.Name)
	}
	var deleted []events.Event // only ids, of a user whose data goes
	if s.events.record {
		deleted = []events.Event{events.Deleted(now, id, u.AppID, s.personIDLocked(u))}
	}
	s.eraseLocked(id, now)
	s.forgetPhoneLocked(id)
	s.line = erasedLine(s.line[:0], id, now)
	var seq int64
	s.line, seq = s.appendEventsLocked(s.line, deleted)
	b := s.journal.Append(s.line)
	s.journal.CompactSoon()
	s.mu.Unlock()
	if err := s.journal.Wait(b); err != nil {
		return account.Erasure{}, err
	}
	s.madeDurable(seq)
	return result, nil
}

// keepForOthersLocked gives each claim kept of user u's person that its
// other records, others, would not find once u is erased the hashes of
// u's unionids too, which those records share (bridgeLocked has given
// them any they lacked): a claim the person found only under u's app's and
// openid's hash, or under a hash whose alias names u. Such is a gift the
// same user took before an earlier erasure of its app and openid, under
// another unionid, then came back and joined this person: the gift stays
// with the person, as on Redis, where the person holds a copy
// (takeOwnClaims), and not only with the alias the erasure leaves, which
// the same user back in its app alone follows. s.mu is held, and the key
// made.
func (s *Store) keepForOthersLocked(u *account.User, others []int64) {
	found := map[string]bool{} // the hashes others find kept claims under
	for _, id := range others {
		r := s.byID[id-1]
		for _, union := range r.UnionIDs() {
			found[account.PersonHash(s.personKey, r.AppID, r.OpenID, union)] = true
		}
		found[account.PersonHash(s.personKey, r.AppID, r.OpenID, "")] = true
	}
	var unions []string
	for _, union := range u.UnionIDs() {
		unions = append(unions, account.PersonHash(s.personKey, u.AppID, u.OpenID, union))
	}
	for _, k := range s.keptOfLocked(u) {
		if found[k.Person] || slices.ContainsFunc(k.Also, func(h string) bool { return found[h] }) {
			continue
		}
		s.addAlsoLocked(k, unions)
	}
}

// addAlsoLocked gives kept claim k each of hashes it is not kept under
// yet, among its Also, and journals it again if that added any. s.mu is
// held, and the key made.
func (s *Store) addAlsoLocked(k *KeptClaim, hashes []string) {
	more := *k
	more.Also = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(k.Also), hashes...))))
	more.Also = slices.DeleteFunc(more.Also, func(h string) bool { return h == k.Person })
	if len(more.Also) > len(k.Also) {
		s.keepLocked(&more)
		s.line = keptLine(s.line[:0], &more)
		s.journal.Append(s.line)
	}
}

// bridgeLocked is the record that takes over the unionids of user u, to
// be erased, which its person's other records lack: the person's first
// other record, with them among its previous_unionids; nil when u had one
// unionid at most, or its person has no other record. s.mu is held.
func (s *Store) bridgeLocked(u *account.User) *account.User {
	if u.PreviousUnionIDs == "" {
		return nil
	}
	var others []int64
	for _, id := range s.personLocked(u) {
		if id != u.ID {
			others = append(others, id)
		}
	}
	if len(others) == 0 {
		return nil
	}
	bridge := *s.byID[others[0]-1]
	if !bridge.AddUnionIDs(u.UnionIDs()) {
		return nil
	}
	return &bridge
}

// eraseLocked takes user id, erased at at, out of memory. s.mu is held, or
// the store is being opened.
func (s *Store) eraseLocked(id int64, at time.Time) {
	s.erasedAt[id] = at
	u := s.byID[id-1]
	if u == nil {
		return // erased already: an erasure replayed twice
	}
	delete(s.byRef, u.Ref())
	s.unlinkUnionLocked(u)
	s.byID[id-1] = nil
	delete(s.claims, id)
	for _, hash := range s.aliasesOn[id] { // handed on before, where there was a record to take them
		delete(s.aliases, hash)
	}
	delete(s.aliasesOn, id)
}

// aliasLocked makes a's hash lead to its user's person, in place of any
// record it led to before. s.mu is held, or the store is being opened.
func (s *Store) aliasLocked(a *Alias) {
	if was, ok := s.aliases[a.Hash]; ok {
		s.aliasesOn[was] = slices.DeleteFunc(s.aliasesOn[was], func(h string) bool { return h == a.Hash })
		if len(s.aliasesOn[was]) == 0 {
			delete(s.aliasesOn, was)
		}
	}
	s.aliases[a.Hash] = a.UserID
	s.aliasesOn[a.UserID] = append(s.aliasesOn[a.UserID], a.Hash)
}

// rejoinLocked gives u, a new user, the unionids of the record its app's
// and openid's hash is an alias of, if any, among its previous_unionids:
// the same user as one erased before, back in its app, is its person
// still, whose claims, made and to be made, it finds, as on Redis
// (takeOwnClaims). It may be back without the unionid it had (its app no
// longer on an Open Platform account), or with another (its app moved to
// another account, which gives each user a new unionid, WECHAT.md §7):
// then its person keeps it as it keeps a live user whose unionid changes
// (account.User.SetUnionID), and a person of the new unionid becomes one
// with it. s.mu is held.
func (s *Store) rejoinLocked(u *account.User) {
	if len(s.aliases) == 0 {
		return
	}
	if id, ok := s.aliases[account.PersonHash(s.personKey, u.AppID, u.OpenID, "")]; ok {
		if r := s.recordLocked(id); r != nil {
			u.AddUnionIDs(r.UnionIDs())
		}
	}
}

// keptOfLocked is every claim kept of user u's person. s.mu is held.
func (s *Store) keptOfLocked(u *account.User) []*KeptClaim {
	var list []*KeptClaim
	for _, hash := range s.personHashesLocked(u) {
		for _, k := range s.kept[hash] {
			if !slices.Contains(list, k) {
				list = append(list, k)
			}
		}
	}
	return list
}

// keepLocked adds k to the kept claims, once, under its person's hash and
// each of its other hashes. A claim kept again (a line replayed twice, or
// the erasure of the person's last record, which gives it that record's
// hashes) is found under the hashes it adds too. s.mu is held, or the
// store is being opened.
func (s *Store) keepLocked(k *KeptClaim) {
	for _, other := range s.kept[k.Person] {
		if other.Name == k.Name && other.At.Equal(k.At) && other.UserID == k.UserID {
			for _, hash := range k.Also {
				if hash != other.Person && !slices.Contains(other.Also, hash) {
					other.Also = append(slices.Clip(other.Also), hash)
					s.kept[hash] = append(s.kept[hash], other)
				}
			}
			slices.Sort(other.Also)
			return
		}
	}
	for _, hash := range append([]string{k.Person}, k.Also...) {
		s.kept[hash] = append(s.kept[hash], k)
	}
}

// replayErasure puts a line of this file in memory as replay reads it.
func (s *Store) replayErasure(l Line) error {
	switch {
	case l.PersonKey != nil:
		if s.personKey != nil && !bytes.Equal(s.personKey, l.PersonKey) {
			return fmt.Errorf("a second person_key")
		}
		s.personKey = l.PersonKey
	case l.Kept != nil:
		if s.personKey == nil {
			return fmt.Errorf("a kept claim before the person_key")
		}
		s.keepLocked(l.Kept)
	case l.Alias != nil:
		id := l.Alias.UserID
		switch {
		case s.personKey == nil:
			return fmt.Errorf("an alias before the person_key")
		case id > int64(len(s.byID)) || s.byID[id-1] == nil && !s.replayedAfterErasure(id):
			return fmt.Errorf("alias names user %d, who is not stored before it", id)
		case s.byID[id-1] == nil:
			return nil // erased again further on
		}
		s.aliasLocked(l.Alias)
	default:
		id := l.Erased.UserID
		switch n := int64(len(s.byID)); {
		case id == n+1:
			s.byID = append(s.byID, nil) // erased before this file: only the id is left
			s.erasedAt[id] = l.Erased.At
		case id > n:
			return fmt.Errorf("erasure of user %d skips ids after %d", id, n)
		default:
			s.erasedInFiles = s.erasedInFiles || s.byID[id-1] != nil
			delete(s.erasedAgain, id)
			s.eraseLocked(id, l.Erased.At)
			s.forgetPhoneLocked(id) // its events' lines before this one hold it
		}
	}
	return nil
}

// finishErasures starts, at start-up, the compaction an erasure asked for
// if it never finished, so that an erased user's data does not wait in the
// files for a compaction of size: the erasure's promise is kept across a
// crash or a failed snapshot too. It returns once the flush that starts it
// is durable; the snapshot is written in the background, as always.
func (s *Store) finishErasures() error {
	if !s.erasedInFiles {
		return nil
	}
	s.journal.CompactSoon()
	return s.journal.Wait(s.journal.Barrier())
}

// keptLinesLocked are the lines that hold the store's erasures, for a snapshot:
// the key, then every kept claim, then every alias.
func (s *Store) keptLinesLocked() [][]byte {
	if s.personKey == nil {
		return nil
	}
	lines := [][]byte{personKeyLine(nil, s.personKey)}
	persons := slices.Sorted(func(yield func(string) bool) {
		for p := range s.kept {
			if !yield(p) {
				return
			}
		}
	})
	for _, p := range persons {
		for _, k := range s.kept[p] {
			if k.Person == p { // not once for each of its other hashes
				lines = append(lines, keptLine(nil, k))
			}
		}
	}
	for _, hash := range slices.Sorted(maps.Keys(s.aliases)) {
		lines = append(lines, aliasLine(nil, &Alias{Hash: hash, UserID: s.aliases[hash]}))
	}
	return lines
}

// aliasLine appends the line of alias a to buf.
func aliasLine(buf []byte, a *Alias) []byte {
	return appendJSONLine(buf, map[string]*Alias{"alias": a})
}

// personKeyLine appends the line of the store's person key to buf.
func personKeyLine(buf, key []byte) []byte {
	return appendJSONLine(buf, map[string]string{"person_key": hex.EncodeToString(key)})
}

// keptLine appends the line of kept claim k to buf.
func keptLine(buf []byte, k *KeptClaim) []byte {
	return appendJSONLine(buf, map[string]*KeptClaim{"kept": k})
}

// erasedLine is the snapshot's line for id, a user erased before it.
func erasedLine(buf []byte, id int64, at time.Time) []byte {
	return appendJSONLine(buf, map[string]Erased{"erased": {UserID: id, At: at}})
}
