package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/redis"
)

// This file keeps a person whole when a unionid changes. A mini program
// moved to another Open Platform account gives each of its users a new
// unionid, the openid staying (WECHAT.md §7). The user stays in their
// person (the login script keeps "person" and adds the old unionid to
// "previous_unionids"), and the person's hash of the new unionid becomes an
// alias of the user's person: "alias" → that person's hash, and nothing
// else. Whoever arrives with the new unionid is sent on to the person
// (joinPerson follows an alias), and if a user of another app had arrived
// with it first, making a person of its own, that person is merged into
// the user's: its records moved over, its claims copied, and it becomes
// the alias. The user's hash marks the unionid "linked" once done; a link
// cut short is done again at the user's next login.

// maxAliasHops bounds the aliases followed from one person's hash, and
// the rounds of one link: more means persons merged in a cycle, which the
// next login meets again.
const maxAliasHops = 8

// settlePerson finishes what a login or an update changed of user u's
// person, from its hash (reply): the join of the person it names
// (joinPerson), and for a user whose unionid changed, the link of the new
// one (linkUnionID).
func (s *Store) settlePerson(ctx context.Context, u account.User, reply any) error {
	if err := s.joinPersonFollowing(ctx, u, hashField(reply, "joined"), hashField(reply, "person")); err != nil {
		return err
	}
	if u.PreviousUnionIDs != "" && hashField(reply, "linked") != u.UnionID {
		return s.linkUnionID(ctx, u)
	}
	return nil
}

// aliasError is a person's hash that is an alias of another: the change
// asked of it was not made.
type aliasError struct{ of, into string }

func (e *aliasError) Error() string { return fmt.Sprintf("person %s is an alias of %s", e.of, e.into) }

// joinPersonFollowing is joinPerson, following aliases: a person merged
// into another sends its joiners on to that one. A user without a unionid
// sent on from its app's and openid's hash (an erased user's alias,
// aliasErased) is the same user back in its app: it takes the unionids of
// a record of the person it joins, as previous_unionids, in the script
// that moves it there, so that its record names the person even once no
// record with those unionids is left, and a move to the files keeps it
// that person, as the file store's Login makes it (users.Store.rejoinLocked).
func (s *Store) joinPersonFollowing(ctx context.Context, u account.User, joined, person string) error {
	for range maxAliasHops {
		err := s.joinPerson(ctx, u, joined, person)
		var alias *aliasError
		if !errors.As(err, &alias) {
			return err
		}
		args := []string{person, alias.into}
		if u.UnionID == "" && u.OpenID != "" && person == s.PersonHash(u.AppID, u.OpenID, "") {
			unions, err := s.unionIDsAt(ctx, alias.into, u.ID)
			if err != nil {
				return err
			}
			args = append(args, unions...)
		}
		if _, err := movePersonScript.Run(ctx, s.rc, []string{userKey(u.ID)}, args...); err != nil {
			return err
		}
		person = alias.into
	}
	return fmt.Errorf("user %d: more than %d aliases from person %s", u.ID, maxAliasHops, person)
}

// unionIDsAt is every unionid of the first record of the person at hash
// (following its aliases) that has any, other than user id; none when no
// record has one.
func (s *Store) unionIDsAt(ctx context.Context, hash string, id int64) ([]string, error) {
	_, fields, err := s.personAt(ctx, hash)
	if err != nil {
		return nil, fmt.Errorf("user %d: %w", id, err)
	}
	for _, m := range membersIn(fields) {
		if m.ID == id {
			continue
		}
		reply, err := s.rc.Do(ctx, "HMGET", userKey(m.ID), "unionid", "previous_unionids")
		if err != nil {
			return nil, err
		}
		f, _ := reply.([]any)
		if len(f) != 2 {
			return nil, fmt.Errorf("HMGET of user %d answered %v", m.ID, reply)
		}
		union, _ := f[0].(string)
		previous, _ := f[1].(string)
		r := account.User{UnionID: union, PreviousUnionIDs: previous}
		if unions := r.UnionIDs(); len(unions) > 0 {
			return unions, nil
		}
	}
	return nil, nil
}

// movePersonScript gives a user's hash person ARGV[2] if it names person
// ARGV[1] still, and answers 1 if its person is ARGV[2] now; what the user
// joined stays, so that the join moves it from there. The unionids from
// ARGV[3] on, if any, are added to the previous_unionids of the user
// (but its unionid), with the move, as account.User.AddUnionIDs adds them:
// a user back through an erased user's alias (joinPersonFollowing,
// takeOwnClaims). A move cut short before it makes neither. Only that
// bumps the record's version "v": it versions the record's fields, which
// Update writes from what it read, and a move alone changes none of them;
// whoever depends on the user's person compares "person" itself (the
// erasure's script, set_members, setJoinedScript, this one), so that a
// move between a read and a write is seen there
// (TestRedisAnErasureOfAUserMergedMeanwhileErasesItWhereItIs).
var movePersonScript = redis.NewScript(`
local person = redis.call('HGET', KEYS[1], 'person')
if person == ARGV[1] then
  redis.call('HSET', KEYS[1], 'person', ARGV[2])
  if #ARGV > 2 then
    local previous, had = {}, {}
    local union = redis.call('HGET', KEYS[1], 'unionid')
    if union then had[union] = true end
    for id in string.gmatch(redis.call('HGET', KEYS[1], 'previous_unionids') or '', '%S+') do
      table.insert(previous, id)
      had[id] = true
    end
    local n = #previous
    for i = 3, #ARGV do
      if not had[ARGV[i]] then table.insert(previous, ARGV[i]) had[ARGV[i]] = true end
    end
    if #previous > n then
      redis.call('HSET', KEYS[1], 'previous_unionids', table.concat(previous, ' '))
      redis.call('HINCRBY', KEYS[1], 'v', 1)
    end
  end
  return 1
end
if person == ARGV[2] then return 1 end
return 0
`)

// linkUnionID makes the person's hash of user u's unionid an alias of the
// user's person, merging into it first the person that hash held, if any,
// and those it was an alias of in turn. It marks the unionid linked on the
// user's hash once done.
func (s *Store) linkUnionID(ctx context.Context, u account.User) error {
	v, err := s.rc.Do(ctx, "HGET", userKey(u.ID), "person")
	if err != nil {
		return err
	}
	person, _ := v.(string)
	if person == "" {
		return fmt.Errorf("link: %w %d", account.ErrNoUser, u.ID) // erased meanwhile
	}
	for of, hops := s.PersonHash(u.AppID, u.OpenID, u.UnionID), 0; of != person; hops++ {
		if hops == maxAliasHops {
			return fmt.Errorf("user %d: more than %d persons to merge from %s", u.ID, maxAliasHops, of)
		}
		reply, err := aliasScript.Run(ctx, s.rc, []string{personHashKey(of)}, person)
		if err != nil {
			return err
		}
		r, _ := reply.([]any)
		status, _ := r[0].(string)
		switch {
		case status == "alias" && len(r) == 2:
			// The claims a claimant who read its person before the alias
			// was set made there are brought over: no claim stays behind.
			if err := s.mergePerson(ctx, of, person); err != nil {
				return err
			}
			of, _ = r[1].(string) // person itself, or another person to merge in turn
		case status == "held":
			if err := s.noteMerge(ctx, u.ID, of); err != nil {
				return err
			}
			if err := s.mergePerson(ctx, of, person); err != nil {
				return err
			}
		default:
			return fmt.Errorf("the alias script answered %v", reply)
		}
	}
	return s.markLinked(ctx, u)
}

// noteMergeScript adds person id ARGV[1] to the persons a user's link is
// merging into its own (the user's hash's "merging", "<id>,<id>…"), unless
// it is there, or the user is erased.
var noteMergeScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'appid') == 0 then return 0 end
local had = redis.call('HGET', KEYS[1], 'merging') or ''
for id in string.gmatch(had, '%d+') do
  if id == ARGV[1] then return 1 end
end
redis.call('HSET', KEYS[1], 'merging', had == '' and ARGV[1] or had .. ',' .. ARGV[1])
return 1
`)

// noteMerge records on user id's hash, with events, the id of the person
// of hash of that its link is about to merge into the user's (the id of
// its earliest record), before any record moves: the person.joined that
// tells receivers so is pushed once the link is done (markLinked), and a
// link cut short and done again at the next login, which finds that
// person an alias by then, still tells it.
func (s *Store) noteMerge(ctx context.Context, id int64, of string) error {
	if !s.events {
		return nil
	}
	fields, err := s.rc.Do(ctx, "HGETALL", personHashKey(of))
	if err != nil {
		return err
	}
	members := membersIn(fields)
	if len(members) == 0 {
		return nil
	}
	_, err = noteMergeScript.Run(ctx, s.rc, []string{userKey(id)}, strconv.FormatInt(firstOf(members[0].ID, members), 10))
	return err
}

// markLinked records that user u's unionid is linked (markLinkedScript)
// and, with events, pushes onto its outbox a person.joined for each person
// its link merged into its own (noteMerge), as the data directory records
// one for each person a new unionid brings together (events.Of): the
// relay writes in the person the user is in, and drops one naming it as
// previous, which it no longer is (the user's own person was the later).
func (s *Store) markLinked(ctx context.Context, u account.User) error {
	for range maxAliasHops {
		keys, args := []string{userKey(u.ID)}, []string{u.UnionID}
		if s.events {
			merging, err := s.rc.Do(ctx, "HGET", userKey(u.ID), "merging")
			if err != nil {
				return err
			}
			list, _ := merging.(string)
			keys, args = append(keys, userOutboxKey(u.ID)), append(args, list)
			at := s.now()
			for prev := range strings.SplitSeq(list, ",") {
				if id, err := strconv.ParseInt(prev, 10, 64); err == nil {
					e := events.Joined(at, &u, 0, id)
					args = append(args, string(e.Append(nil)))
				}
			}
		}
		done, err := markLinkedScript.Run(ctx, s.rc, keys, args...)
		if err != nil {
			return err
		}
		switch done {
		case int64(2):
			s.note(userOutboxKey(u.ID))
			return s.pinJoins(ctx, u.ID)
		case int64(1):
			return nil
		}
	}
	return fmt.Errorf("user %d: the persons its link merges kept changing", u.ID)
}

// aliasScript makes a person's hash that holds no records an alias of
// person ARGV[1], and answers {"alias", the person it is an alias of}; or
// {"held"} when it holds records, which are to be moved first. Its claims
// stay, until they are copied to that person (mergePerson): from then on
// claimScript claims nothing here.
var aliasScript = redis.NewScript(`
local alias = redis.call('HGET', KEYS[1], 'alias')
if alias then return {'alias', alias} end
local fields = redis.call('HKEYS', KEYS[1])
for _, f in ipairs(fields) do
  if string.sub(f, 1, 2) == 'u:' then return {'held'} end
end
redis.call('HDEL', KEYS[1], 'ver')
redis.call('HSET', KEYS[1], 'alias', ARGV[1])
return {'alias', ARGV[1]}
`)

// aliasErased makes hash, the app's and openid's hash of an erased user
// who had a unionid, an alias of the user's person, unless it is a person
// with records, which stays. It may hold claims and a version, left when
// the user learned its unionid (joinPerson takes only the user out of
// it): those claims are copied to the person first, so that the alias
// hides none, and it becomes an alias all the same, or the user back
// without its unionid would not find the claims it made since. It may be
// an alias of another person already, made at the erasure of an earlier
// user of the same app and openid (with a unionid its app had before it
// moved to another Open Platform account): the claims kept there are
// copied to the person too (the user's creation took them already, as
// takeOwnClaims does), and the alias is turned to the person, so that
// the user back without a unionid finds the claims of both. But where
// that other person has records and the user (id) is the last of its own
// (personFields, its person's HGETALL), the alias stays on the person
// with records, whose claims, made and to be made, the user back finds
// only so, and the user's person's claims are copied there: as the file
// store keeps the alias on a record of the person (users.Store.Erase).
func (s *Store) aliasErased(ctx context.Context, hash, person string, id int64, personFields any) error {
	fields, err := s.rc.Do(ctx, "HGETALL", personHashKey(hash))
	if err == nil {
		fields, err = s.dropErased(ctx, hash, fields)
	}
	if err != nil {
		return err
	}
	if len(membersIn(fields)) > 0 {
		return nil
	}
	was := hashField(fields, "alias")
	if was == "" {
		return s.aliasKept(ctx, hash, fields, person)
	}
	if was == person {
		return nil
	}
	into, held, err := s.personAt(ctx, was)
	if err == nil {
		held, err = s.withoutErased(ctx, held)
	}
	if err == nil {
		personFields, err = s.withoutErased(ctx, personFields)
	}
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	last := !slices.ContainsFunc(membersIn(personFields), func(m account.Member) bool { return m.ID != id })
	if into != person && last && len(membersIn(held)) > 0 {
		return s.copyClaims(ctx, personFields, into)
	}
	if into != person {
		if err := s.copyClaims(ctx, keptIn(held), person); err != nil {
			return err
		}
	}
	_, err = realiasScript.Run(ctx, s.rc, []string{personHashKey(hash)}, was, person)
	return err
}

// realiasScript turns the alias KEYS[1] from person ARGV[1] to person
// ARGV[2], if it is an alias of ARGV[1] still.
var realiasScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'alias') == ARGV[1] then redis.call('HSET', KEYS[1], 'alias', ARGV[2]) end
return 1
`)

// takeOwnClaims brings to the person of user id, created with a unionid,
// the claims kept under its app's and openid's hash (own, which its hash
// names as "own" until then), following its aliases: the same user of the
// same app, erased before, when it had no unionid, or another one (its
// app moved to another Open Platform account since), as the file store
// finds them (personHashesLocked). Only claims whose claimant is no
// record of that person come along: those of erased users. Where the
// hash leads to a person with records (the erased user's person, which
// its erasure aliased it to, aliasErased), the user is that person still,
// back with another unionid, and joins it instead (rejoinPerson), as the
// file store's Login makes it (users.Store.rejoinLocked). The mark is
// taken away only once that is done, so that a login cut short before
// that (Redis lost, wxlogin killed) leaves it to the user's next login,
// or its first claim, which does it then.
func (s *Store) takeOwnClaims(ctx context.Context, id int64, own string) error {
	from, fields, err := s.personAt(ctx, own)
	if err == nil {
		fields, err = s.withoutErased(ctx, fields)
	}
	if err != nil {
		return fmt.Errorf("user %d: %w", id, err)
	}
	records := slices.ContainsFunc(membersIn(fields), func(m account.Member) bool { return m.ID != id })
	if kept := keptIn(fields); len(kept) > 0 || records {
		v, err := s.rc.Do(ctx, "HGET", userKey(id), "person")
		if err != nil {
			return err
		}
		person, _ := v.(string)
		if person == "" {
			return nil // erased meanwhile
		}
		var unions []string
		if records && person != from {
			if unions, err = s.unionIDsAt(ctx, from, id); err != nil {
				return err
			}
		}
		switch {
		case person == from:
		case len(unions) > 0:
			if s.beforeRejoin != nil {
				s.beforeRejoin()
			}
			if err := s.rejoinPerson(ctx, id, person, from, unions); err != nil {
				return err
			}
		default:
			if err := s.copyClaims(ctx, kept, person); err != nil {
				return err
			}
		}
	}
	_, err = tookOwnScript.Run(ctx, s.rc, []string{userKey(id)}, own)
	return err
}

// rejoinPerson moves user id, new with a unionid, from person, which its
// unionid named, to into, the person with records its app's and openid's
// hash leads to (takeOwnClaims): the user takes unions, the unionids of a
// record of into, among its previous_unionids, joins into with the claims
// of person, and its unionid is linked to into (linkUnionID), which merges
// the records of person into it, as for a live user whose unionid changes.
// Each step may be done twice: one cut short is finished by the user's
// next login (settlePerson), the mark "own" being still there. A user
// moved on meanwhile (a merge of its person into another, linkUnionID) is
// moved from where it is now: a move that changed nothing would leave it
// out of into for good, as the mark is taken away after this, and a gift
// into took would be taken again
// (TestRedisARejoinRacingAMergeStillJoinsTheErasedUsersPerson).
func (s *Store) rejoinPerson(ctx context.Context, id int64, person, into string, unions []string) error {
	for hop := 0; ; hop++ {
		moved, err := movePersonScript.Run(ctx, s.rc, []string{userKey(id)}, append([]string{person, into}, unions...)...)
		if err != nil {
			return err
		}
		if moved == int64(1) {
			break
		}
		if hop == maxAliasHops {
			return fmt.Errorf("user %d: moved on %d times while it rejoined person %s", id, maxAliasHops, into)
		}
		v, err := s.rc.Do(ctx, "HGET", userKey(id), "person")
		if err != nil {
			return err
		}
		if person, _ = v.(string); person == "" {
			return nil // erased meanwhile: nothing to join
		}
	}
	u, hash, ok, err := s.userHash(ctx, id)
	if err != nil || !ok {
		return err // erased meanwhile, if ok is false: nothing to join
	}
	return s.settlePerson(ctx, u, hash)
}

// personAt is the person's hash that hash is, following its aliases, and
// that person's fields (its HGETALL).
func (s *Store) personAt(ctx context.Context, hash string) (string, any, error) {
	for range maxAliasHops {
		fields, err := s.rc.Do(ctx, "HGETALL", personHashKey(hash))
		if err != nil {
			return "", nil, err
		}
		into := hashField(fields, "alias")
		if into == "" {
			return hash, fields, nil
		}
		hash = into
	}
	return "", nil, fmt.Errorf("more than %d aliases from person %s", maxAliasHops, hash)
}

// tookOwnScript takes the mark "own" off a user's hash (KEYS[1]) if it
// is ARGV[1] still: the user took the claims kept there (takeOwnClaims).
var tookOwnScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'own') == ARGV[1] then redis.call('HDEL', KEYS[1], 'own') end
return 1
`)

// withoutErased is a person's hash (fields, its HGETALL) without the
// records of users erased since: an erasure cut short leaves its user in
// the person's list until it is finished (finishErasure), and that user's
// claims are kept claims all the same, which the same user back takes.
func (s *Store) withoutErased(ctx context.Context, fields any) (any, error) {
	gone := map[string]bool{}
	for _, m := range membersIn(fields) {
		n, err := s.rc.Do(ctx, "HEXISTS", userKey(m.ID), "appid")
		if err != nil {
			return nil, err
		}
		if n == int64(0) {
			gone["u:"+strconv.FormatInt(m.ID, 10)] = true
		}
	}
	if len(gone) == 0 {
		return fields, nil
	}
	pairs, _ := fields.([]any)
	left := make([]any, 0, len(pairs))
	for i := 0; i+1 < len(pairs); i += 2 {
		if f, _ := pairs[i].(string); !gone[f] {
			left = append(left, pairs[i], pairs[i+1])
		}
	}
	return left, nil
}

// dropErased takes out of the person's hash hash (fields, its HGETALL)
// the records of users erased since, as their erasures' finish does
// (finishErasure), and answers its fields then: an earlier user of the
// same app and openid, whose erasure was cut short, does not keep its
// app's and openid's hash a person with records.
func (s *Store) dropErased(ctx context.Context, hash string, fields any) (any, error) {
	left, err := s.withoutErased(ctx, fields)
	if err != nil {
		return nil, err
	}
	live := membersIn(left)
	gone := false
	for _, m := range membersIn(fields) {
		if slices.Contains(live, m) {
			continue
		}
		gone = true
		var merged *aliasError
		if err := s.spreadMembers(ctx, hash, 0, "del", "u:"+strconv.FormatInt(m.ID, 10)); err != nil && !errors.As(err, &merged) {
			return nil, err
		}
	}
	if !gone {
		return fields, nil
	}
	return s.rc.Do(ctx, "HGETALL", personHashKey(hash))
}

// keptIn is the claims of a person's hash (fields, its HGETALL) whose
// users are none of its records, as HGETALL gives them.
func keptIn(fields any) []any {
	members := map[int64]bool{}
	for _, m := range membersIn(fields) {
		members[m.ID] = true
	}
	var kept []any
	pairs, _ := fields.([]any)
	for i := 0; i+1 < len(pairs); i += 2 {
		f, _ := pairs[i].(string)
		v, _ := pairs[i+1].(string)
		name, isClaim := strings.CutPrefix(f, "c:")
		if c, err := parseClaim(name, v); isClaim && err == nil && !members[c.UserID] {
			kept = append(kept, pairs[i], pairs[i+1])
		}
	}
	return kept
}

// aliasKept makes hash, whose fields (its HGETALL) hold neither records
// nor an alias, an alias of person, its claims (those kept of erased
// users) copied there first, so that the alias hides none. A record added
// meanwhile keeps it a person (aliasScript).
func (s *Store) aliasKept(ctx context.Context, hash string, fields any, person string) error {
	if err := s.copyClaims(ctx, fields, person); err != nil {
		return err
	}
	_, err := aliasScript.Run(ctx, s.rc, []string{personHashKey(hash)}, person)
	return err
}

// markLinkedScript records on a user's hash that its unionid ARGV[1] is
// linked, if that is its unionid still. With events (KEYS[2] its outbox),
// if the persons its link merged (the hash's "merging") are still those
// read (ARGV[2]), it pushes their person.joined events (ARGV from the
// third) and forgets them, in the same step, and answers 2, or 1 when
// there were none; if another link added one since the read, it answers
// 0, writing nothing, to be run again. A link cut short before it pushes
// them at its next try.
var markLinkedScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'unionid') ~= ARGV[1] then return 1 end
if KEYS[2] and (redis.call('HGET', KEYS[1], 'merging') or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'linked', ARGV[1])
if not KEYS[2] or ARGV[2] == '' then return 1 end
for i = 3, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('HDEL', KEYS[1], 'merging')
return 2
`)

// mergePerson moves every record of person from into person into, each as
// a join that brings the claims along (joinPerson), then copies the claims
// left (those of erased users, or made while it was becoming an alias)
// too. Each step may be done twice.
func (s *Store) mergePerson(ctx context.Context, from, into string) error {
	if from == into {
		return nil
	}
	fields, err := s.rc.Do(ctx, "HGETALL", personHashKey(from))
	if err != nil {
		return err
	}
	for _, m := range membersIn(fields) { // none in an alias
		// A member whose own join to from was cut short (it joined another
		// person whole last) finishes it first: that person's claims come
		// along to from, and so to into.
		joined, err := s.rc.Do(ctx, "HMGET", userKey(m.ID), "person", "joined")
		if err != nil {
			return err
		}
		if f, _ := joined.([]any); len(f) == 2 && f[0] == from && f[1] != nil && f[1] != from {
			if err := s.joinPersonFollowing(ctx, account.User{ID: m.ID, AppID: m.AppID}, f[1].(string), from); err != nil {
				return err
			}
		}
		moved, err := movePersonScript.Run(ctx, s.rc, []string{userKey(m.ID)}, from, into)
		if err != nil {
			return err
		}
		if moved != int64(1) {
			// Of another person by now (or erased): only taken out of this one.
			var merged *aliasError
			if err := s.spreadMembers(ctx, from, 0, "del", "u:"+strconv.FormatInt(m.ID, 10)); err != nil && !errors.As(err, &merged) {
				return err
			}
			continue
		}
		if err := s.joinPersonFollowing(ctx, account.User{ID: m.ID, AppID: m.AppID}, from, into); err != nil {
			return err
		}
	}
	return s.copyClaims(ctx, fields, into)
}
