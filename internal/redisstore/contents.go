package redisstore

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/redis"
)

// This file is the store read and written whole, for the tools that move
// a store between a data directory and Redis (wxlogin to-redis and
// from-redis): Export reads everything but the tokens into Contents, Import
// writes Contents into an empty Redis, and Census counts what Redis holds,
// by its keys, for the tools to compare with the files. No wxlogin may
// write to Redis meanwhile.

// Contents is a whole store but its tokens and session_keys, which a
// move does not carry: users log in again.
type Contents struct {
	// LastID is the last user id given: every id up to it is a user's
	// or an erasure's.
	LastID int64
	// Users is every user with a record, by id.
	Users []account.User
	// Erased is when each erased id was erased. Export counts an id no
	// user holds (taken by a login that lost a race for its openid) as
	// erased at the moment it read it.
	Erased map[int64]time.Time
	// Claims is the claims of users with a record, each by the user who
	// made it.
	Claims []account.Claim
	// Kept is the claims of erased users, by the keyed hash of their
	// person (account.PersonHash), which a returning person does not
	// take twice.
	Kept map[string][]account.Claim
	// KeptAliases is the other hashes of erased users, each to the hash
	// in Kept its claims are under: a unionid the user had before, and
	// its app's and openid's if it had one. Each is an alias in Redis,
	// its own kept claims copied, unless a person with records or an
	// alias is there; a person with records takes the claims instead, as
	// each user takes those under each of its hashes (account.UserHashes).
	// A hash several erased users had is of the last one's person, whose
	// claims in Kept include the others', as Redis keeps them.
	KeptAliases map[string]string
	// AliasedRecords is the app's and openid's hash of each erased user
	// whose person had records left, to the first of them: an alias of
	// that person in Redis (aliasErased), an alias line in the files
	// (users.Alias). The same user back in its app without a unionid
	// joins the person.
	AliasedRecords map[string]int64
	// PersonKey is the key of the persons' hashes; nil for none, which
	// leaves Redis its own.
	PersonKey []byte
}

// Census is what both sides of a move must agree on: the users with a
// record, the persons they are, and the claims, counted by person and name.
type Census struct {
	Users, Persons, Claims int
}

// StoredMeta is the mode and apps rc holds a store of, as Open bound
// them; false when it holds no store of wxlogin's.
func StoredMeta(ctx context.Context, rc *redis.Client) (account.Meta, bool, error) {
	v, err := rc.Do(ctx, "GET", metaKey)
	if err != nil {
		return account.Meta{}, false, err
	}
	stored, _ := v.(string)
	var meta account.Meta
	if json.Unmarshal([]byte(stored), &meta) != nil {
		return account.Meta{}, false, nil
	}
	return meta, true, nil
}

// Census counts what Redis holds, by its keys: users with a record, the
// persons they belong to, and the claims of every person, as the file
// store's are counted (account.ClaimCensus).
func (s *Store) Census(ctx context.Context) (Census, error) {
	var c Census
	persons := map[string]bool{}
	personOf := map[int64]string{} // of each user with a record
	var records []account.User
	last, err := s.highestID(ctx)
	if err != nil {
		return c, err
	}
	for id := int64(1); id <= last; id++ {
		u, person, ok, err := s.record(ctx, id)
		if err != nil {
			return c, err
		}
		if ok {
			c.Users++
			persons[person] = true
			personOf[id] = person
			records = append(records, u)
		}
	}
	c.Persons = len(persons)
	keys, err := s.rc.Scan(ctx, "wx:{p:*}")
	if err != nil {
		return c, err
	}
	aliasOf := map[string]string{}
	held := map[string][]account.Claim{} // the claims of each hash
	for _, key := range keys {
		reply, err := s.rc.Do(ctx, "HGETALL", key)
		if err != nil {
			return c, err
		}
		list, err := claimsIn(reply)
		if err != nil {
			return c, err
		}
		hash := strings.TrimSuffix(strings.TrimPrefix(key, "wx:{p:"), "}")
		if into := hashField(reply, "alias"); into != "" {
			aliasOf[hash] = into
		}
		held[hash] = list
	}
	// An alias's claims are its person's (redislink.go).
	personAt := func(hash string) string { return followed(aliasOf, hash) }
	var claims account.ClaimCensus
	for hash, list := range held {
		for _, claim := range list {
			if person, live := personOf[claim.UserID]; live {
				claims.Add(person, claim.Name)
			} else {
				claims.AddKept(claim.UserID, claim.Name, personAt(hash))
			}
		}
	}
	for _, u := range records {
		for _, h := range account.UserHashes(s.PersonHash, u) {
			claims.Sees(personOf[u.ID], personAt(h))
		}
	}
	c.Claims = claims.Count()
	return c, nil
}

// lastID is the last user id given, 0 for none.
func (s *Store) lastID(ctx context.Context) (int64, error) {
	v, err := s.rc.Do(ctx, "GET", idsKey)
	if err != nil || v == nil {
		return 0, err
	}
	text, _ := v.(string)
	return strconv.ParseInt(text, 10, 64)
}

// highestID is the highest id of a user's hash (a record or an erasure),
// or wx:ids if higher: what a move reads up to. wx:ids may be behind the
// records (a failover that lost the last INCRs) until a new user's login
// moves it on; a move that stopped at it would leave those behind, with
// counts that agree.
func (s *Store) highestID(ctx context.Context) (int64, error) {
	last, err := s.lastID(ctx)
	if err != nil {
		return 0, err
	}
	keys, err := s.rc.Scan(ctx, "wx:{u:*}") // the hashes only: their other keys go on after the }
	if err != nil {
		return 0, err
	}
	for _, key := range keys {
		id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(key, "wx:{u:"), "}"), 10, 64)
		if err == nil {
			last = max(last, id)
		}
	}
	return last, nil
}

// Import writes every user, erasure and claim of c into Redis, which must
// hold no users. The last id goes last: a move cut short can be run again,
// and writes the same.
func (s *Store) Import(ctx context.Context, c Contents) error {
	if last, err := s.lastID(ctx); err != nil || last != 0 {
		return errors.Join(err, errors.New("this Redis already holds users: move into an empty Redis (or database)"))
	}
	if c.PersonKey != nil {
		// Claims kept of erased users are under the files' key: Redis takes
		// it, which it can while it holds no users.
		if _, err := s.rc.Do(ctx, "SET", personKeyKey, hex.EncodeToString(c.PersonKey)); err != nil {
			return err
		}
		s.personKey = c.PersonKey
	}
	users := map[int64]*account.User{}
	for i := range c.Users {
		users[c.Users[i].ID] = &c.Users[i]
	}
	claims := map[int64][]account.Claim{}
	for _, cl := range c.Claims {
		claims[cl.UserID] = append(claims[cl.UserID], cl)
	}
	// A person whose records had several unionids is kept under the hash
	// of its first, and each other's hash is an alias of it (redislink.go).
	personOf, aliases := account.PersonHashes(s.PersonHash, c.Users)
	for _, alias := range slices.Sorted(maps.Keys(aliases)) {
		if _, err := s.rc.Pipeline(ctx, [][]string{{"DEL", personHashKey(alias)}, {"HSET", personHashKey(alias), "alias", aliases[alias]}}); err != nil {
			return err
		}
	}
	for id := int64(1); id <= c.LastID; id++ {
		u := users[id]
		if u == nil {
			at := c.Erased[id]
			if _, err := s.rc.Pipeline(ctx, [][]string{{"DEL", userKey(id)}, {"HSET", userKey(id), "erased", formatTime(at)}}); err != nil {
				return err
			}
			continue
		}
		person := personOf[id]
		hset := []string{"HSET", userKey(id), "id", strconv.FormatInt(id, 10), "appid", u.AppID, "openid", u.OpenID,
			"person", person, "joined", person, "linked", u.UnionID, "v", "1", "created_at", formatTime(u.CreatedAt), "updated_at", formatTime(u.UpdatedAt),
			"last_login_at", formatTime(u.LastLoginAt)}
		fields := fieldsOf(u)
		for j := 0; j < len(fields); j += 2 {
			if fields[j+1] != "" {
				hset = append(hset, fields[j], fields[j+1])
			}
		}
		replies, err := s.rc.Pipeline(ctx, [][]string{{"DEL", userKey(id)}, hset})
		if err == nil {
			err = firstError(replies)
		}
		if err == nil {
			_, err = s.rc.Do(ctx, "SET", openIDKey(u.AppID, u.OpenID), strconv.FormatInt(id, 10))
		}
		if err == nil {
			_, err = s.rc.Do(ctx, "HSET", personHashKey(person), "u:"+strconv.FormatInt(id, 10), u.AppID)
		}
		if err != nil {
			return err
		}
		for _, cl := range claims[id] {
			v := formatClaim(account.Claim{AppID: u.AppID, UserID: id, ClaimedAt: cl.ClaimedAt})
			if _, err := mergeClaimsScript.Run(ctx, s.rc, []string{personHashKey(person)}, "c:"+cl.Name, v); err != nil {
				return err
			}
		}
	}
	for _, hash := range slices.Sorted(maps.Keys(c.Kept)) {
		if err := s.mergeKept(ctx, cmp.Or(aliases[hash], hash), c.Kept[hash]); err != nil {
			return err
		}
	}
	if err := s.takeKept(ctx, c, personOf); err != nil {
		return err
	}
	// An erased user's hash leads to the person its kept claims are
	// under, or to its person's records.
	personAt := maps.Clone(c.KeptAliases)
	if personAt == nil {
		personAt = map[string]string{}
	}
	for _, hash := range slices.Sorted(maps.Keys(c.AliasedRecords)) {
		person, ok := personOf[c.AliasedRecords[hash]]
		if !ok {
			continue
		}
		// The claims kept under the other person the hash is an other
		// hash of (the same user of the app, erased under another unionid
		// as the last record of that person), which the file store finds
		// under the hash, come along to the person it leads to.
		if kept, ok := c.KeptAliases[hash]; ok && cmp.Or(aliases[kept], kept) != person {
			if err := s.mergeKept(ctx, person, c.Kept[kept]); err != nil {
				return err
			}
		}
		personAt[hash] = person
	}
	for _, hash := range slices.Sorted(maps.Keys(personAt)) {
		into := cmp.Or(aliases[personAt[hash]], personAt[hash])
		if hash == into {
			continue
		}
		// A hash that holds claims kept of erased users itself (a user of
		// the app, erased before it learned the unionid) becomes an alias
		// too, its claims copied, as Erase makes it (aliasErased); a person
		// (which took the claims above) or an alias there stays.
		fields, err := s.rc.Do(ctx, "HGETALL", personHashKey(hash))
		if err != nil {
			return err
		}
		if hashField(fields, "alias") != "" || len(membersIn(fields)) > 0 {
			continue
		}
		if err := s.aliasKept(ctx, hash, fields, into); err != nil {
			return err
		}
	}
	_, err := s.rc.Do(ctx, "SET", idsKey, strconv.FormatInt(c.LastID, 10))
	return err
}

// takeKept gives the person of each user of c (personOf) the claims kept
// under each of the user's hashes, which it finds as its own on the file
// store (account.UserHashes), those kept under an erased user's other
// hash (KeptAliases) too, as a new user takes its own on Redis
// (takeOwnClaims): a user back on the files before the move.
func (s *Store) takeKept(ctx context.Context, c Contents, personOf map[int64]string) error {
	if len(c.Kept) == 0 {
		return nil // no one was erased with a claim: no hash to make
	}
	for i := range c.Users {
		u := &c.Users[i]
		for _, hash := range account.UserHashes(s.PersonHash, *u) {
			kept := c.Kept[hash]
			if into, ok := c.KeptAliases[hash]; ok && into != hash {
				kept = append(slices.Clip(kept), c.Kept[into]...)
			}
			if err := s.mergeKept(ctx, personOf[u.ID], kept); err != nil {
				return err
			}
		}
	}
	return nil
}

// mergeKept adds kept, claims of erased users, to the hash of person,
// the earliest of each name counting.
func (s *Store) mergeKept(ctx context.Context, person string, kept []account.Claim) error {
	if len(kept) == 0 {
		return nil
	}
	args := make([]string, 0, 2*len(kept))
	for _, k := range kept {
		args = append(args, "c:"+k.Name, formatClaim(account.Claim{AppID: k.AppID, UserID: k.UserID, ClaimedAt: k.ClaimedAt}))
	}
	_, err := mergeClaimsScript.Run(ctx, s.rc, []string{personHashKey(person)}, args...)
	return err
}

// Export reads Redis's store whole: every id up to the highest any user's
// hash or wx:ids names, as a record or an erasure, so that ids stay as
// they are; then the claims, each by the user who made it, or kept under
// its person's hash when that user was erased.
func (s *Store) Export(ctx context.Context) (Contents, error) {
	c := Contents{Erased: map[int64]time.Time{}, Kept: map[string][]account.Claim{}, KeptAliases: map[string]string{},
		AliasedRecords: map[string]int64{}, PersonKey: s.personKey}
	last, err := s.highestID(ctx)
	if err != nil {
		return Contents{}, err
	}
	c.LastID = last
	live := map[int64]bool{}
	personOf := map[int64]string{}
	for id := int64(1); id <= last; id++ {
		u, person, ok, err := s.record(ctx, id)
		if err != nil {
			return Contents{}, err
		}
		if ok {
			c.Users = append(c.Users, u)
			live[id] = true
			personOf[id] = person
			continue
		}
		erasedAt, err := s.rc.Do(ctx, "HGET", userKey(id), "erased")
		if err != nil {
			return Contents{}, err
		}
		at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(erasedAt))
		if at.IsZero() {
			at = s.stamp(time.Second) // an id a lost race took: never a user
		}
		c.Erased[id] = at
	}
	bridgePersons(c.Users, personOf)
	keys, err := s.rc.Scan(ctx, "wx:{p:*")
	if err != nil {
		return Contents{}, err
	}
	// A claim may be both in a person and in an alias of it (copied when
	// the alias was made, redislink.go): it is read once, as the person's.
	seen := map[string]bool{}
	aliasOf := map[string]string{}
	for _, key := range keys {
		if !strings.HasSuffix(key, "}") {
			continue // a person's outbox of events (redisevents.go), not its hash
		}
		hash := strings.TrimSuffix(strings.TrimPrefix(key, "wx:{p:"), "}")
		reply, err := s.rc.Do(ctx, "HGETALL", key)
		if err != nil {
			return Contents{}, err
		}
		if into := hashField(reply, "alias"); into != "" {
			aliasOf[hash] = into
			hash = into
		}
		claims, err := claimsIn(reply)
		if err != nil {
			return Contents{}, err
		}
		for _, cl := range claims {
			once := fmt.Sprint(cl.UserID, "\x00", cl.Name)
			if !live[cl.UserID] {
				once += "\x00" + hash
			}
			switch {
			case seen[once]:
			case live[cl.UserID]:
				c.Claims = append(c.Claims, cl)
			default:
				c.Kept[hash] = append(c.Kept[hash], cl)
			}
			seen[once] = true
		}
	}
	// An alias is an erased user's other hash if its person holds claims
	// kept of erased users (a person's own aliases, kept by the file store
	// as its records' unionids, come along; they are that person's too).
	for hash, into := range aliasOf {
		if len(c.Kept[into]) > 0 {
			c.KeptAliases[hash] = into
		}
	}
	// An alias of a person with records is an erased user's app's and
	// openid's hash (aliasErased), unless it is the hash of a unionid its
	// records have (linkUnionID): the file store knows those as unionids.
	first := map[string]int64{} // the first record of each person
	unions := map[string]bool{}
	for _, u := range c.Users {
		if _, ok := first[personOf[u.ID]]; !ok {
			first[personOf[u.ID]] = u.ID
		}
		for _, union := range u.UnionIDs() {
			unions[s.PersonHash("", "", union)] = true
		}
	}
	for hash := range aliasOf {
		if id, ok := first[followed(aliasOf, hash)]; ok && !unions[hash] {
			c.AliasedRecords[hash] = id
		}
	}
	return c, nil
}

// followed is the person hash leads to by the aliases of aliasOf (alias
// → the hash it sends on to), as personAt follows them in Redis, at most
// maxAliasHops of them.
func followed(aliasOf map[string]string, hash string) string {
	for range maxAliasHops {
		into, ok := aliasOf[hash]
		if !ok {
			return hash
		}
		hash = into
	}
	return hash
}

// bridgePersons makes the records of each person (by personOf) one person
// by their unionids too, as the file store sees persons: a record erased
// since may have been all that joined them (its unionids, changed, were
// linked by an alias, redislink.go). The person's first record is given
// the unionids of the others among its previous_unionids, as the file
// store's erasure does (users.Store.Erase).
func bridgePersons(records []account.User, personOf map[int64]string) {
	byPerson := map[string][]int{} // the indexes of each person's records, by id
	for i, u := range records {
		byPerson[personOf[u.ID]] = append(byPerson[personOf[u.ID]], i)
	}
	for _, group := range byPerson {
		if len(group) < 2 {
			continue
		}
		members := make([]account.User, len(group))
		for j, i := range group {
			members[j] = records[i]
		}
		if byUser, _ := account.Persons(members); len(slices.Compact(slices.Sorted(maps.Values(byUser)))) == 1 {
			continue // one person by their unionids already
		}
		for _, i := range group[1:] {
			records[group[0]].AddUnionIDs(records[i].UnionIDs())
		}
		// A record with no unionid joined the person through the alias of
		// an erased user's app and openid (aliasErased): the file store's
		// Login gives it the person's unionids, as it does here.
		for _, i := range group[1:] {
			if len(records[i].UnionIDs()) == 0 {
				records[i].AddUnionIDs(records[group[0]].UnionIDs())
			}
		}
	}
}
