package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/redis"
)

// This file records events (internal/events), with Options.Events. A
// script in a cluster touches one hash slot, and a change and the global
// log are in different slots, so the script that makes a change pushes
// its event onto an outbox in its own slot, atomic with it: the user's
// (wx:{u:<id>}:ev) or, for a claim, the person's (wx:{p:<hash>}:ev). The
// change's call returns then: the event is durable in its outbox. The
// relay (RunRelay), in the background and off the request's path, moves
// the outboxes' heads into the log (wx:{ev}), numbering each event there,
// and pops what it moved. A relay cut short between the two moves the same
// events again: the log may hold an event twice, with one id, which
// receivers drop; it never loses one. On one Redis server, where a script
// may touch any slot (crossSlot), one script moves the outboxes at once
// (relayScript). The log is kept whole: Redis holds it until an operator
// trims it (XTRIM wx:{ev} MINID).
//
// An erasure deletes its user's phone.bound events from the log by an
// index of them (wx:{ev}:phones) that append_events keeps. A wxlogin from
// before the index logged them without it: the relay's first run indexes
// those, once, in chunks, and deletes those of users erased already
// (indexOlderPhones), recording how far it got in wx:{ev}:indexed.
//
// An instance killed leaves the outboxes it pushed onto unrelayed. Finding
// them takes a SCAN of the whole keyspace (RelayLeftovers), so it is done
// only when one may be there: at each start, and when an instance has
// stopped without saying so. Each relay beats in a hash (wx:{ev}:relays,
// its holder and the Redis time its lease ends), and the relay that finds
// another's lease lapsed sweeps. A relay that stops drains what it noted
// and leaves the hash.
//
// Login and Update settle the user's person after their script, in other
// slots, so the person id an event of theirs names is not known when it is
// pushed: they push it with "person_id":0, and the relay writes in the
// person's id as it is then (the user's hash's copy of its person's list
// gives it), having finished first what a login cut short left of the
// user's person (personNow). A person.joined carries the person id from
// before the change, which the script reads; the relay drops one whose
// person is still that one: no join happened. A record made before events
// were recorded has no user.created; its changes from then on push their
// own events.

// Keys of the events, as the layout in redisstore.go gives them.
const (
	eventLogKey     = "wx:{ev}"
	eventSeqKey     = "wx:{ev}:seq"
	deliveredKey    = "wx:{ev}:delivered"
	deliveryLockKey = "wx:{ev}:lock"
	relaysKey       = "wx:{ev}:relays"
	phonesKey       = "wx:{ev}:phones"
	forgottenKey    = "wx:{ev}:forgotten"
	indexedKey      = "wx:{ev}:indexed"
)

// logKeys are the keys of the scripts that append to the log
// (appendEventsLua), in their order.
var logKeys = []string{eventLogKey, eventSeqKey, phonesKey, forgottenKey}

func userOutboxKey(id int64) string        { return userKey(id) + ":ev" }
func personOutboxKey(person string) string { return personHashKey(person) + ":ev" }

// pinJoinsScript writes into a user's outbox (KEYS[2]) the person id of
// each person.joined it holds without one, as the user's hash (KEYS[1])
// gives it now (person_id), and takes out those whose person is still the
// one they name as previous: no join happened. It answers 0, changing
// nothing, when the hash holds no good copy of its person's list.
var pinJoinsScript = redis.NewScript(eventsLua + `
local person = person_id(KEYS[1])
if not person then return 0 end
local list = redis.call('LRANGE', KEYS[2], '0', '-1')
for i = #list, 1, -1 do
  local text = list[i]
  if string.find(text, '"type":"person.joined"', 1, true) and string.find(text, placeholder, 1, true) then
    local f = filled(text, person)
    if f then redis.call('LSET', KEYS[2], i - 1, f) else redis.call('LREM', KEYS[2], 1, text) end
  end
end
return 1
`)

// pinJoins judges the person.joined events user id's outbox holds once
// the change that pushed them has settled its person (pinJoinsScript):
// whether a join happened, and into which person, is then fixed as it was
// at the change, as the data directory records it, and a later change of
// the person (its earliest record erased) before the relay runs does not
// undo it. A change cut short before it leaves them to the relay, which
// judges them as the person is then.
func (s *Store) pinJoins(ctx context.Context, id int64) error {
	_, err := pinJoinsScript.Run(ctx, s.rc, []string{userKey(id), userOutboxKey(id)})
	return err
}

// relayBatch is how many events of an outbox one relay moves at a time.
const relayBatch = 100

// relayLinger is how long the relay waits, once woken, for more outboxes
// to move with the first: one round of round trips carries them all.
const relayLinger = 20 * time.Millisecond

// relayBeat is how often a relay renews its lease in wx:{ev}:relays, and
// relayLease how long the lease lasts: another instance's relay sweeps the
// outboxes of one killed at most relayLease+relayBeat after its last beat.
const (
	relayBeat  = 10 * time.Second
	relayLease = 30 * time.Second
)

// eventsLua is the Lua the scripts that record events share, put before
// each: person_id, the id of the person's earliest record as the user's
// hash's copy of its person's list (m) gives it, as Person does
// (copiedMembers), or nil when that is no good copy, or, asked by the
// relay (settled true), when the user's hash is marked "own" still: its
// login was cut short before it took the claims kept under its app's and
// openid's hash, which may move it to its erased user's person (personNow
// finishes it); and filled, an
// event's text with person written in for its personPlaceholder, or nil
// for a person.joined whose person is still the one it names as previous
// (no join happened); a text without the placeholder as it is.
const eventsLua = `
local placeholder = '"person_id":0'
local function filled(text, person)
  local at = string.find(text, placeholder, 1, true)
  if not at then return text end
  if string.find(text, '"type":"person.joined"', 1, true) and string.match(text, '"previous_person_id":(%d+)') == person then
    return nil
  end
  return string.sub(text, 1, at - 1) .. '"person_id":' .. person .. string.sub(text, at + #placeholder)
end
local function person_id(k, settled)
  local f = redis.call('HMGET', k, 'm', 'person', 'id', 'appid', 'own')
  if not f[1] or not f[2] or (settled and f[5]) then return nil end
  local tag, list = string.match(f[1], '^(%x+)@%d+|(.*)$')
  if not tag or tag ~= string.sub(f[2], 1, 16) then return nil end
  local first, mine = nil, false
  for part in string.gmatch(list, '[^,]+') do
    local id, app = string.match(part, '^(%d+):(.*)$')
    if id then
      if id == f[3] and app == f[4] then mine = true end
      if not first or tonumber(id) < tonumber(first) then first = id end
    end
  end
  if not mine then return nil end
  return first
end
`

// personPlaceholder is the person id an event is pushed with when the
// relay is to write in the person's (filled, in eventsLua). events.Event.Append
// writes it once, right after the appid; no other bytes of the JSON read
// as it does, its strings' quotes being escaped, and no person id begins
// with 0.
const personPlaceholder = `"person_id":0`

// joinedTemplate is user u's person.joined at at, cut where the script
// writes in the person id it had before: the two pieces it goes between.
func joinedTemplate(at time.Time, u *account.User) []string {
	const hole = `"previous_person_id":-2`
	joined := events.Joined(at, u, 0, -2)
	text := string(joined.Append(nil))
	before, after, _ := strings.Cut(text, hole)
	return []string{before + `"previous_person_id":`, after}
}

// aroundPerson is e's JSON, made with personPlaceholder, cut where a
// script writes in the person id: the two pieces it goes between.
func aroundPerson(e *events.Event) []string {
	before, after, _ := strings.Cut(string(e.Append(nil)), personPlaceholder)
	return []string{before + `"person_id":`, after}
}

// loginEvents are the login script's arguments with events: with created,
// the user.created of user id, which it pushes if it creates the record,
// and with joined, the person.joined of a login that brings a unionid,
// which it pushes if the unionid is new to the record; "" for each it is
// not given.
func (s *Store) loginEvents(id int64, appID, unionID string, created, joined bool) []string {
	at := s.now()
	u := account.User{ID: id, AppID: appID}
	args := []string{"", "", ""}
	if created {
		e := events.Created(at, &u, 0)
		args[0] = string(e.Append(nil))
	}
	if joined && unionID != "" {
		copy(args[1:], joinedTemplate(at, &u))
	}
	return args
}

// updateEvents are the update script's arguments with events, for a
// change of a record from old to u: its phone.bound, when it binds a new
// phone number, and its person.joined, when it gives the record a unionid;
// "" for each it is not given.
func (s *Store) updateEvents(old, u *account.User) []string {
	at := s.now()
	args := []string{"", "", ""}
	if u.PhoneNumber != "" && (u.PhoneNumber != old.PhoneNumber || u.CountryCode != old.CountryCode) {
		bound := events.PhoneChanged(at, u, 0)
		args[0] = string(bound.Append(nil))
	}
	if old.UnionID == "" && u.UnionID != "" {
		copy(args[1:], joinedTemplate(at, u))
	}
	return args
}

// note marks an outbox as holding events for the relay, and wakes it. The
// outboxes noted are moved in the order they were first noted, so that
// changes of several users reach the log in the order they were made, as
// much as one relay's batch can tell.
func (s *Store) note(outboxes ...string) {
	s.relayMu.Lock()
	s.noted = addInOrder(s.noted, outboxes...)
	s.relayMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// addInOrder is addNew, and more: an outbox list holds already, ahead of
// the one before it in outboxes, is moved to after it, so that outboxes
// are moved in their order (a claimant's own outbox before its person's,
// which another member's claim noted first). What was ahead of the moved
// one stays ahead of it.
func addInOrder(list []string, outboxes ...string) []string {
	for i, outbox := range outboxes {
		at := slices.Index(list, outbox)
		if at >= 0 && i > 0 && slices.Index(list, outboxes[i-1]) > at {
			list, at = slices.Delete(list, at, at+1), -1
		}
		if at < 0 {
			list = append(list, outbox)
		}
	}
	return list
}

// addNew is list with each of outboxes it does not hold added, in order.
func addNew(list []string, outboxes ...string) []string {
	for _, outbox := range outboxes {
		if !slices.Contains(list, outbox) {
			list = append(list, outbox)
		}
	}
	return list
}

// RunRelay moves the events of the outboxes this process pushed onto into
// the log as they come, until ctx ends: woken by a change, it waits
// relayLinger for more, then moves every outbox noted meanwhile in one
// round of round trips. An outbox whose relay failed is moved at the next
// wake or beat. Every relayBeat it renews this relay's lease and, if
// another's lapsed, sweeps (RelayLeftovers) beside it. When ctx ends it
// moves what is noted and gives its lease up; what it could not move waits
// for the sweep of an instance that finds the lease lapsed. Beside it, it
// indexes the phone.bound events an earlier wxlogin logged, once
// (indexOlderPhones).
func (s *Store) RunRelay(ctx context.Context) {
	var sweeps sync.WaitGroup
	defer s.stopRelay(ctx, &sweeps)
	// The log's older entries are indexed beside the relay's work, once.
	indexing := make(chan struct{})
	go func() {
		defer close(indexing)
		s.indexOlderPhones(ctx)
	}()
	defer func() { <-indexing }()
	linger := time.NewTimer(relayLinger)
	linger.Stop()
	beat := time.NewTicker(s.beat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if s.renewLease(ctx) && s.sweeping.CompareAndSwap(false, true) {
				// A sweep SCANs the whole keyspace: the relay goes on meanwhile.
				sweeps.Go(func() {
					defer s.sweeping.Store(false)
					s.sweep(ctx)
				})
			}
			s.relayMu.Lock()
			s.noted = addNew(s.noted, s.troubled...) // tried again once a beat
			s.troubled = nil
			s.relayMu.Unlock()
		case <-s.wake:
			linger.Reset(relayLinger)
			select {
			case <-ctx.Done():
				linger.Stop()
				return
			case <-linger.C:
			}
		}
		if err := s.relayNoted(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("events recorded, not yet in the log: moved at the next try", "err", err)
		}
	}
}

// relayNoted moves the outboxes noted, and notes again those it could
// not.
func (s *Store) relayNoted(ctx context.Context) error {
	s.relayMu.Lock()
	noted := s.noted
	s.noted = nil
	s.relayMu.Unlock()
	for len(noted) > 0 {
		more, err := s.relay(ctx, noted)
		if err != nil {
			s.relayMu.Lock()
			s.noted = addNew(noted, s.noted...)
			s.relayMu.Unlock()
			return err
		}
		noted = more
	}
	return nil
}

// stopRelay waits for a sweep under way, moves what is noted, and makes
// the sweep owed, within a few seconds; if that all went, it gives this
// relay's lease up, and otherwise leaves it to lapse, so that another
// instance sweeps.
func (s *Store) stopRelay(ctx context.Context, sweeps *sync.WaitGroup) {
	sweeps.Wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.relayNoted(ctx)
	if err == nil && s.sweepOwed.Load() {
		err = s.RelayLeftovers(ctx)
	}
	if err != nil {
		s.log.Warn("events recorded, not yet in the log at the stop: another instance, or the next start, moves them", "err", err)
		return
	}
	if _, err := beatScript.Run(ctx, s.rc, []string{relaysKey}, s.relayID, "0"); err != nil {
		s.log.Warn("events: the relay's lease not given up; it lapses", "err", err)
	}
}

// beatScript renews the lease of relay ARGV[1] in the hash KEYS[1] for
// ARGV[2] ms from Redis's clock, or with ARGV[2] "0" gives it up; it takes
// out the relays whose lease lapsed, and answers how many.
var beatScript = redis.NewScript(`
if ARGV[2] == '0' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all, lapsed = redis.call('HGETALL', KEYS[1]), 0
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] and (tonumber(all[i + 1]) or 0) < now then
    redis.call('HDEL', KEYS[1], all[i])
    lapsed = lapsed + 1
  end
end
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
return lapsed
`)

// renewLease renews this relay's lease, and reports whether a sweep is
// owed: another relay's lease lapsed (its instance was killed, leaving
// its outboxes), now or at a sweep that failed since.
func (s *Store) renewLease(ctx context.Context) bool {
	lapsed, err := beatScript.Run(ctx, s.rc, []string{relaysKey}, s.relayID, strconv.FormatInt(s.lease.Milliseconds(), 10))
	if err != nil {
		s.log.Warn("events: the relay's lease not renewed", "err", err)
	} else if n, _ := lapsed.(int64); n > 0 {
		s.log.Info("events: an instance stopped without relaying; moving what it left", "instances", n)
		s.sweepOwed.Store(true)
	}
	return s.sweepOwed.Load()
}

// sweep moves what every outbox holds (RelayLeftovers), and owes it again
// if it fails.
func (s *Store) sweep(ctx context.Context) {
	if err := s.RelayLeftovers(ctx); err != nil {
		if !errors.Is(ctx.Err(), context.Canceled) {
			s.log.Warn("events: the events left in outboxes not relayed; trying again at the next beat", "err", err)
		}
		return
	}
	s.sweepOwed.Store(false)
}

// appendEventsLua is append_events(list), which appends the events list
// to the log (KEYS[1]), each with the next seq of the counter (KEYS[2])
// as its id, "<seq>-1", and answers how many it appended. The seq of each
// phone.bound goes into the user's field of KEYS[3] ("<seq>,<seq>…"), so
// that the user's erasure can take the number out of the log
// (forget); a phone.bound of a user erased already (in the set KEYS[4])
// is not appended: a relay that read it before the erasure comes after
// it. A user.deleted forgets its user as it is appended: Erase forgets
// the user too, in a call of its own after the erasure, and one cut short
// there (the log's slot unreachable, wxlogin killed) is not tried again,
// the record being gone; the user.deleted, pushed with the erasure, comes
// after every event of its user in the outbox, its phone.bound too.
//
// forget(user) takes the phone.bound events of user, erased, out of the
// log, by the seqs KEYS[3] holds of them, and adds the user to KEYS[4].
// Redis cannot change an entry of a stream: the event goes, its seq left
// unused. An entry is deleted only if it is that user's phone.bound: a
// seq of a log deleted and begun again names another event.
const appendEventsLua = `
local function forget(user)
  redis.call('SADD', KEYS[4], user)
  local seqs = redis.call('HGET', KEYS[3], user)
  if seqs then
    for seq in string.gmatch(seqs, '%d+') do
      local id = seq .. '-1'
      local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
      local text = entry and entry[2][2] or ''
      if string.find(text, '"type":"phone.bound"', 1, true) and string.match(text, '"user_id":(%d+)') == user then
        redis.call('XDEL', KEYS[1], id)
      end
    end
    redis.call('HDEL', KEYS[3], user)
  end
end
local function append_events(list)
  local kept = {}
  for _, text in ipairs(list) do
    local user = string.find(text, '"type":"phone.bound"', 1, true) and string.match(text, '"user_id":(%d+)')
    if not (user and redis.call('SISMEMBER', KEYS[4], user) == 1) then table.insert(kept, {text, user}) end
  end
  if #kept == 0 then return 0 end
  local seq = redis.call('INCRBY', KEYS[2], #kept) - #kept
  for i, e in ipairs(kept) do
    redis.call('XADD', KEYS[1], string.format('%d-1', seq + i), 'e', e[1])
    if e[2] then
      local had = redis.call('HGET', KEYS[3], e[2])
      redis.call('HSET', KEYS[3], e[2], (had and had .. ',' or '') .. (seq + i))
    elseif string.find(e[1], '"type":"user.deleted"', 1, true) then
      forget(string.match(e[1], '"user_id":(%d+)'))
    end
  end
  return #kept
end
`

// appendScript appends the events ARGV to the log (append_events).
var appendScript = redis.NewScript(appendEventsLua + `
return append_events(ARGV)
`)

// forgetPhonesScript takes the phone.bound events of user ARGV[1], erased,
// out of the log, and adds the user to the erased, whose phone.bound no
// relay appends from then on (forget, in appendEventsLua; KEYS are
// logKeys). ARGV[2] is "events" if this instance records them; if not,
// and there is no log, it writes nothing.
var forgetPhonesScript = redis.NewScript(appendEventsLua + `
if ARGV[2] ~= 'events' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
forget(ARGV[1])
return 1
`)

// forgetPhones takes the phone numbers of user id, erased, out of the log
// (forgetPhonesScript).
func (s *Store) forgetPhones(ctx context.Context, id int64) error {
	recording := ""
	if s.events {
		recording = "events"
	}
	_, err := forgetPhonesScript.Run(ctx, s.rc, logKeys, strconv.FormatInt(id, 10), recording)
	return err
}

// indexOlderScript indexes, in wx:{ev}:phones, up to ARGV[1] entries of
// the log an earlier wxlogin appended without the index, from where the
// marker (KEYS[5], wx:{ev}:indexed; KEYS[1] to KEYS[4] are logKeys) says
// the indexing got: a phone.bound's seq goes into its user's field, unless
// it is there, or, its user being erased already (in KEYS[4]), the entry
// is deleted; a user.deleted, an erasure an earlier wxlogin logged, forgets
// its user (forget), deleting the phone.bound events indexed so far. The
// marker holds "<after>,<end>": the entries with a seq above after and up
// to end are left to index. The first run records end, the last seq given
// then (KEYS[2]): every entry appended from then on was indexed as it was
// appended. Once the indexing reaches end, the marker holds "done", and
// the script changes nothing. In one script, no relay's append nor
// erasure comes between its reads and its writes, and a run cut short
// (wxlogin killed) leaves the marker where its last chunk left it. It
// answers {1 if done, phone.bound events indexed, deleted, users
// forgotten, after, end}.
var indexOlderScript = redis.NewScript(appendEventsLua + `
local mark = redis.call('GET', KEYS[5])
if mark == 'done' then return {1, 0, 0, 0, 0, 0} end
local after, last
if mark then
  after, last = string.match(mark, '^(%d+),(%d+)$')
  if not after then return redis.error_reply(KEYS[5] .. ' holds neither done nor <seq>,<seq>') end
  after, last = tonumber(after), tonumber(last)
else
  after, last = 0, tonumber(redis.call('GET', KEYS[2]) or '0')
end
local count = tonumber(ARGV[1])
local entries = {}
if after < last then
  entries = redis.call('XRANGE', KEYS[1], string.format('%d', after + 1), string.format('%d', last), 'COUNT', count)
end
local indexed, deleted, forgotten = 0, 0, 0
for _, entry in ipairs(entries) do
  local seq = tonumber(string.match(entry[1], '^(%d+)-'))
  local text = entry[2][2] or ''
  local user = string.match(text, '"user_id":(%d+)')
  if user and string.find(text, '"type":"phone.bound"', 1, true) then
    if redis.call('SISMEMBER', KEYS[4], user) == 1 then
      redis.call('XDEL', KEYS[1], entry[1])
      deleted = deleted + 1
    else
      local had, known = redis.call('HGET', KEYS[3], user), false
      for s in string.gmatch(had or '', '%d+') do
        if tonumber(s) == seq then known = true end
      end
      if not known then
        redis.call('HSET', KEYS[3], user, (had and had .. ',' or '') .. string.format('%d', seq))
        indexed = indexed + 1
      end
    end
  elseif user and string.find(text, '"type":"user.deleted"', 1, true) then
    forget(user)
    forgotten = forgotten + 1
  end
  after = seq
end
if #entries < count or after >= last then
  redis.call('SET', KEYS[5], 'done')
  return {1, indexed, deleted, forgotten, last, last}
end
redis.call('SET', KEYS[5], string.format('%d,%d', after, last))
return {0, indexed, deleted, forgotten, after, last}
`)

// indexKeys are indexOlderScript's keys: logKeys, then the marker.
var indexKeys = []string{eventLogKey, eventSeqKey, phonesKey, forgottenKey, indexedKey}

// indexChunk is how many entries of the log one indexOlderScript reads,
// so that it holds Redis a few milliseconds at a time, and indexPause how
// long the indexing leaves Redis to the others between two.
const (
	indexChunk = 500
	indexPause = 10 * time.Millisecond
)

// indexed is what indexOlderScript did, over one chunk or more.
type indexed struct {
	done                       bool
	phones, deleted, forgotten int64
	after, end                 int64
}

// indexOlder runs indexOlderScript once, over n entries at most.
func (s *Store) indexOlder(ctx context.Context, n int) (indexed, error) {
	reply, err := indexOlderScript.Run(ctx, s.rc, indexKeys, strconv.Itoa(n))
	if err != nil {
		return indexed{}, err
	}
	r, _ := reply.([]any)
	if len(r) != 6 {
		return indexed{}, fmt.Errorf("the indexing script answered %v", reply)
	}
	var v [6]int64
	for i := range v {
		v[i], _ = r[i].(int64)
	}
	return indexed{done: v[0] == 1, phones: v[1], deleted: v[2], forgotten: v[3], after: v[4], end: v[5]}, nil
}

// indexOlderPhones indexes the phone.bound events an earlier wxlogin
// appended to the log without wx:{ev}:phones (indexOlderScript), chunk
// after chunk, until the marker says it is done or ctx ends, so that an
// erasure deletes them too, and deletes those of the users erased
// already. Once done it costs one GET at each start. A chunk that fails
// (Redis lost) is tried again a beat later. Every relay runs it, at its
// start: of several instances at once, each chunk goes on from where the
// last, whichever ran it, left the marker.
func (s *Store) indexOlderPhones(ctx context.Context) {
	if mark, err := s.rc.Do(ctx, "GET", indexedKey); err == nil && mark == "done" {
		return
	}
	var total indexed
	for chunks := 1; ; chunks++ {
		wait := indexPause
		did, err := s.indexOlder(ctx, indexChunk)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("events: the indexing of the phone numbers an earlier wxlogin logged failed; trying again", "in", s.beat, "err", err)
			wait = s.beat
		} else {
			total.phones, total.deleted, total.forgotten = total.phones+did.phones, total.deleted+did.deleted, total.forgotten+did.forgotten
			if did.done {
				if chunks > 1 || did.phones+did.deleted+did.forgotten > 0 {
					s.log.Info("events: the phone numbers an earlier wxlogin logged are indexed, for erasures to delete",
						"indexed", total.phones, "deleted", total.deleted, "erasures", total.forgotten)
				}
				return
			}
			if chunks%200 == 1 {
				s.log.Info("events: indexing the phone numbers an earlier wxlogin logged, for erasures to delete", "at_seq", did.after, "to_seq", did.end)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// relay moves the head of each of outboxes into the log, and answers the
// outboxes that hold more than it moved. It sets aside (trouble) those it
// cannot move for what they hold. The relays of this process go one at a
// time.
//
// On one Redis server a script moves them (relayScript), and leaves to
// relayEach only an outbox whose person id it cannot fill in from its
// user's hash, or that is not a list. A Cluster's script cannot: the log
// and each outbox are in different slots (crossSlot).
func (s *Store) relay(ctx context.Context, outboxes []string) (more []string, err error) {
	s.relaying.Lock()
	defer s.relaying.Unlock()
	if s.crossSlot {
		var moved int64
		if moved, outboxes, more, err = s.relayInScript(ctx, outboxes); err != nil {
			return nil, err
		}
		if moved > 0 {
			s.signalRecorded()
		}
		if len(outboxes) == 0 {
			return more, nil
		}
	}
	rest, err := s.relayEach(ctx, outboxes)
	return append(rest, more...), err // the one left came before those the script did not read
}

// relayMax bounds the events one relayScript reads, so that a sweep of
// many outboxes holds Redis a few milliseconds at a time.
const relayMax = 1000

// relayScript moves the heads of outboxes into the log (append_events;
// KEYS[1] to KEYS[4] are logKeys), as relayEach does, in one script on one
// server. KEYS from the fifth are pairs: an outbox, and its user's hash
// (the outbox again for a person's outbox: no key is ""). ARGV[1] is relayBatch,
// ARGV[2] the most events to read (relayMax). An outbox named twice is
// read once. An event pushed without its person id (personPlaceholder) is
// given the one the user's hash's copy of its person's list gives
// (person_id); a person.joined whose person is still the one it names as
// previous is dropped. It answers how many events it appended, the outbox
// it left as it is for relayEach (one that is not a list, or whose person
// id it cannot tell), and the outboxes that hold more than it moved: the
// one it read only in part (more than relayBatch events), and those it did
// not read, past relayMax, past the one it left or past the one it read
// in part, so that the outboxes reach the log in the order they were
// noted: a claim noted after its claimant's many events goes after them
// all. The outboxes are trimmed of what was moved only once it is in the
// log: a script that fails midway, whose writes so far Redis keeps, loses
// nothing; an outbox read whole is deleted. In one script, no other relay
// takes from an outbox meanwhile. Its commands are given strings, never
// Lua numbers, which Redis turns into strings with printf at about 0.7 µs
// each: two of them an outbox were a tenth of the script's time
// (BENCHMARKS.md).
var relayScript = redis.NewScript(appendEventsLua + eventsLua + `
local batch, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local last = tostring(batch - 1)
local moved, trims, left, more, read, seen, cut = {}, {}, {}, {}, 0, {}, false
for i = 5, #KEYS, 2 do
  local outbox, user = KEYS[i], KEYS[i + 1]
  local head = not seen[outbox] and read < most and #left == 0 and not cut and redis.pcall('LRANGE', outbox, '0', last) or nil
  seen[outbox] = true
  if not head then
    table.insert(more, outbox)
  elseif head.err then
    table.insert(left, outbox)
  else
    read = read + #head
    local person, known = nil, true
    for _, text in ipairs(head) do
      if not person and string.find(text, placeholder, 1, true) then
        if user ~= outbox then
          local ok, id = pcall(person_id, user, true) -- a user's key that is no hash: left
          if ok then person = id end
        end
        if not person then known = false break end
      end
    end
    if not known then
      table.insert(left, outbox)
    elseif #head > 0 then
      for _, text in ipairs(head) do
        local f = filled(text, person)
        if f then table.insert(moved, f) end
      end
      table.insert(trims, {outbox, #head})
      if #head == batch then table.insert(more, outbox) cut = true end
    end
  end
end
local appended = append_events(moved)
for _, trim in ipairs(trims) do
  if trim[2] < batch then redis.call('DEL', trim[1]) else redis.call('LTRIM', trim[1], ARGV[1], '-1') end
end
return {appended, left, more}
`)

// relayInScript moves outboxes with relayScript, and answers how many
// events it moved, the outbox it left to relayEach, if any, and the
// outboxes that hold more than it moved.
func (s *Store) relayInScript(ctx context.Context, outboxes []string) (moved int64, left, more []string, err error) {
	keys := make([]string, 0, len(logKeys)+2*len(outboxes))
	keys = append(keys, logKeys...)
	for _, outbox := range outboxes {
		user := outbox
		if id, ok := userOfOutbox(outbox); ok {
			user = userKey(id)
		}
		keys = append(keys, outbox, user)
	}
	reply, err := relayScript.Run(ctx, s.rc, keys, strconv.Itoa(relayBatch), strconv.Itoa(s.relayMax))
	if err != nil {
		return 0, nil, nil, err
	}
	r, _ := reply.([]any)
	if len(r) != 3 {
		return 0, nil, nil, fmt.Errorf("the relay script answered %v", reply)
	}
	moved, _ = r[0].(int64)
	return moved, texts(r[1]), texts(r[2]), nil
}

// texts is the strings of an array reply.
func texts(reply any) []string {
	list, _ := reply.([]any)
	out := make([]string, 0, len(list))
	for _, v := range list {
		text, _ := v.(string)
		out = append(out, text)
	}
	return out
}

// headScript is the head of an outbox (KEYS[1]), ARGV[1] events at most,
// with the person id written in, in the outbox itself, where an event was
// pushed without it (personPlaceholder), and without the person.joined
// that joined no one, taken out of it: as pinJoinsScript judges them, in
// one script in the outbox's slot, so that of the relay and a join's pin
// the first to judge an event fixes it, and the other, and the relay's
// pop, meet it as judged. The person id is ARGV[2], or if that is "" the
// one the user's hash (KEYS[2]; the outbox again for a person's) gives
// (person_id). It answers {1, the head, how many events it read}, or {0,
// the head as it is} when it holds an event to fill in and the person id
// is not known: then it changes nothing.
var headScript = redis.NewScript(eventsLua + `
local head = redis.call('LRANGE', KEYS[1], '0', tostring(tonumber(ARGV[1]) - 1))
local person = ARGV[2] ~= '' and ARGV[2] or nil
for _, text in ipairs(head) do
  if not person and string.find(text, placeholder, 1, true) then
    if KEYS[2] ~= KEYS[1] then person = person_id(KEYS[2], true) end
    if not person then return {0, head} end
  end
end
local out, dropped = {}, {}
for i, text in ipairs(head) do
  local f = filled(text, person)
  if not f then
    table.insert(dropped, text)
  else
    if f ~= text then redis.call('LSET', KEYS[1], i - 1, f) end
    table.insert(out, f)
  end
end
for _, text in ipairs(dropped) do
  redis.call('LREM', KEYS[1], 1, text)
end
return {1, out, #head}
`)

// relayEach moves the head of each of outboxes into the log: their heads
// judged in place (headScript) in one round trip, the events appended in
// one call, then popped in one round trip. It answers the outboxes that
// hold more than it moved: the first it moved only in part, and those
// after it, moved at the next relay, in order. It sets aside (trouble)
// those it cannot move for what they hold.
//
// A pop is an LREM of each event moved, as the outbox holds it once
// judged: an event's id is its own, so it takes that event and no other,
// and one that another relay took first is taken no more. A join's pin
// between the read and the pop finds the events judged, and leaves them
// as they are: the pop takes them, and no event is moved twice, under two
// person ids (TestRedisARelayAndAJoinsPinLogTheJoinOnce).
func (s *Store) relayEach(ctx context.Context, outboxes []string) (more []string, err error) {
	calls := make([][]string, len(outboxes))
	for i, outbox := range outboxes {
		calls[i] = headCall(outbox, "")
	}
	replies, err := headScript.RunEach(ctx, s.rc, 2, calls)
	if err != nil {
		return nil, err
	}
	var batch []string
	var pops [][][]string
	for i, reply := range replies {
		if len(more) > 0 { // past one moved in part: none overtakes its rest
			more = append(more, outboxes[i])
			continue
		}
		head, read, err := s.judged(ctx, outboxes[i], reply)
		var refused redis.Error // not a list, or the user's key not a hash
		if errors.Is(err, errNoPersonID) || errors.Is(err, errDamagedRecord) || errors.As(err, &refused) {
			s.trouble(outboxes[i], err)
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(head) > 0 {
			batch = append(batch, head...)
			pop := make([][]string, len(head))
			for j, text := range head {
				pop[j] = []string{"LREM", outboxes[i], "1", text}
			}
			pops = append(pops, pop)
		}
		if read == relayBatch {
			more = append(more, outboxes[i])
		}
	}
	if len(batch) > 0 {
		if err := s.appendEvents(ctx, batch); err != nil {
			return nil, err
		}
	}
	if len(pops) > 0 {
		// Never before the append: a pop cut short leaves events to move
		// again, never lost.
		if _, err := s.rc.PipelineEach(ctx, pops); err != nil {
			return nil, err
		}
	}
	return more, nil
}

// headCall is headScript's keys and args for outbox, with person, or ""
// for the one its user's hash gives.
func headCall(outbox, person string) []string {
	user := outbox
	if id, ok := userOfOutbox(outbox); ok {
		user = userKey(id)
	}
	return []string{outbox, user, strconv.Itoa(relayBatch), person}
}

// judged is the head of outbox that headScript answered (reply), judged,
// and how many events it read. When the script could not tell the
// person id, as for a user whose hash holds no good copy of its person's
// list, it reads it as Person does (personNow) and runs the script again
// with it.
func (s *Store) judged(ctx context.Context, outbox string, reply any) (head []string, read int, err error) {
	for try := 0; ; try++ {
		if refused, ok := reply.(redis.Error); ok {
			return nil, 0, refused
		}
		r, _ := reply.([]any)
		if len(r) == 3 && r[0] == int64(1) {
			n, _ := r[2].(int64)
			return texts(r[1]), int(n), nil
		}
		if len(r) != 2 || r[0] != int64(0) || try > 0 {
			// Not the reply itself: it holds events, phone numbers among them.
			return nil, 0, fmt.Errorf("the head script answered a %T of %d parts, not {1, head, read} or {0, head}", reply, len(r))
		}
		id, ok := userOfOutbox(outbox)
		if !ok {
			return nil, 0, errNoPersonID
		}
		person, err := s.personNow(ctx, id, texts(r[1]))
		if err != nil {
			return nil, 0, err
		}
		call := headCall(outbox, person)
		reply, err = headScript.Run(ctx, s.rc, call[:2], call[2:]...)
		var refused redis.Error
		if errors.As(err, &refused) {
			reply = refused
		} else if err != nil {
			return nil, 0, err
		}
	}
}

// errNoPersonID is the trouble of an outbox other than a user's that holds
// an event with no person id: no relay can fill it in.
var errNoPersonID = errors.New("holds an event with no person id, and is not a user's")

// trouble sets aside an outbox the relay cannot move for what it holds,
// and says so; RunRelay tries it again at its next beat, and a sweep
// meets it too, while the other outboxes go on.
//
// A user's record damaged (errDamagedRecord) where the relay reads its
// person is an error to log: an operator must mend it. Its user's events
// wait in their outbox, in order, until then: a person id guessed would
// tell the receivers of a person that may not be the user's, and an
// event dropped would lose a change that was acknowledged.
func (s *Store) trouble(outbox string, err error) {
	if errors.Is(err, errDamagedRecord) {
		s.log.Error("events: a user's record is damaged; its events wait in its outbox until it is mended", "outbox", outbox, "err", err)
	} else {
		s.log.Warn("events: an outbox holds what the relay cannot move; left as it is", "outbox", outbox, "err", err)
	}
	s.relayMu.Lock()
	s.troubled = addNew(s.troubled, outbox)
	s.relayMu.Unlock()
}

// personNow is user id's person id as Person reads it, for a user whose
// hash holds no good copy of its person's list, or one a login cut short
// is about to move it from; for a user erased since, the one its
// user.deleted in head names, or else its own. What a login or update cut
// short left of the user's person is finished first (settled), as its
// next login would: a user back in its app after its erasure is then in
// its erased user's person, which the file store names in its
// user.created, not the person it is about to leave, of which receivers
// would hear no more.
func (s *Store) personNow(ctx context.Context, id int64, head []string) (string, error) {
	if _, _, err := s.settled(ctx, id); err != nil && !errors.Is(err, account.ErrNoUser) {
		return "", err
	}
	_, members, ok, err := s.Person(ctx, id)
	if err != nil {
		return "", err
	}
	if ok {
		return strconv.FormatInt(firstOf(id, members), 10), nil
	}
	if e, err := events.Parse([]byte(head[len(head)-1])); err == nil && e.Type == events.UserDeleted {
		return strconv.FormatInt(e.Data.PersonID, 10), nil
	}
	return strconv.FormatInt(id, 10), nil
}

// firstOf is the id of the earliest of members, user id's person's
// records: the person's id.
func firstOf(id int64, members []account.Member) int64 {
	first := id
	for _, m := range members {
		first = min(first, m.ID)
	}
	return first
}

// userOfOutbox is the user id of a user's outbox, wx:{u:<id>}:ev.
func userOfOutbox(outbox string) (int64, bool) {
	text, ok := strings.CutPrefix(outbox, "wx:{u:")
	if !ok {
		return 0, false
	}
	text, ok = strings.CutSuffix(text, "}:ev")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(text, 10, 64)
	return id, err == nil
}

// personIDOf is the id of user u's person's earliest record, as Person
// lists it: from the copy of the list the user's hash holds (reply), or
// else from its person's hash (person, its HGETALL).
func personIDOf(u account.User, reply, person any) int64 {
	members, ok := copiedMembers(u, reply)
	if !ok {
		members = membersIn(person)
	}
	return firstOf(u.ID, members)
}

// appendEvents appends events, as their outbox holds them, to the log,
// and signals Recorded.
func (s *Store) appendEvents(ctx context.Context, batch []string) error {
	if _, err := appendScript.Run(ctx, s.rc, logKeys, batch...); err != nil {
		return err
	}
	s.signalRecorded()
	return nil
}

// signalRecorded tells Recorded's reader that events were moved into the
// log.
func (s *Store) signalRecorded() {
	select {
	case s.recorded <- struct{}{}:
	default:
	}
}

// RelayLeftovers moves into the log the events every outbox holds: those
// of a relay cut short, or of an instance killed before it relayed them.
// It SCANs the whole keyspace: Open runs it, and RunRelay when it finds an
// instance gone.
func (s *Store) RelayLeftovers(ctx context.Context) error {
	if err := s.writable(); err != nil {
		return err
	}
	var outboxes []string
	// The users' outboxes go first, so that a user's user.created is in
	// the log before its claim, in its person's outbox.
	for _, pattern := range []string{"wx:{u:*}:ev", "wx:{p:*}:ev"} {
		found, err := s.rc.Scan(ctx, pattern)
		if err != nil {
			return unavailable(err)
		}
		// SCAN may list a key more than once: each outbox is relayed once.
		slices.Sort(found)
		outboxes = append(outboxes, slices.Compact(found)...)
	}
	for len(outboxes) > 0 {
		n := min(len(outboxes), relayBatch)
		more, err := s.relay(ctx, outboxes[:n])
		if err != nil {
			return unavailable(err)
		}
		outboxes = addNew(more, outboxes[n:]...) // in the order they were listed
	}
	return nil
}

// Events lists up to limit events with a seq above after, oldest first,
// from the log: an event's seq is its id there.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]events.Event, error) {
	list := []events.Event{}
	if limit < 1 {
		return list, nil
	}
	reply, err := s.rc.Do(ctx, "XRANGE", eventLogKey, strconv.FormatInt(max(after, 0)+1, 10), "+", "COUNT", strconv.Itoa(limit))
	if err != nil {
		return nil, unavailable(err)
	}
	entries, _ := reply.([]any)
	list = slices.Grow(list, len(entries)) // a webhook's round reads a hundred at a time
	for _, entry := range entries {
		pair, _ := entry.([]any)
		if len(pair) != 2 {
			return nil, unavailable(fmt.Errorf("%s holds the entry %v", eventLogKey, entry))
		}
		id, _ := pair[0].(string)
		seqText, _, _ := strings.Cut(id, "-")
		seq, err := strconv.ParseInt(seqText, 10, 64)
		if err != nil {
			return nil, unavailable(fmt.Errorf("%s holds the entry id %q", eventLogKey, id))
		}
		e, err := events.Parse([]byte(hashField(pair[1], "e")))
		if err != nil {
			return nil, unavailable(fmt.Errorf("%s entry %s: %w", eventLogKey, id, err))
		}
		e.Seq = seq
		list = append(list, e)
	}
	return list, nil
}

// Delivered is the seq through which the webhook delivered every event.
func (s *Store) Delivered(ctx context.Context) (int64, error) {
	v, err := s.rc.Do(ctx, "GET", deliveredKey)
	if err != nil || v == nil {
		return 0, unavailable(err)
	}
	text, _ := v.(string)
	seq, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, unavailable(fmt.Errorf("%s holds %q, not a seq", deliveredKey, text))
	}
	return seq, nil
}

// setDeliveredScript moves the delivered seq on to ARGV[1], never back:
// of two instances, one late with an older seq leaves the newer.
var setDeliveredScript = redis.NewScript(`
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`)

// SetDelivered records that every event through seq is delivered.
func (s *Store) SetDelivered(ctx context.Context, seq int64) error {
	if err := s.writable(); err != nil {
		return err
	}
	_, err := setDeliveredScript.Run(ctx, s.rc, []string{deliveredKey}, strconv.FormatInt(seq, 10))
	return unavailable(err)
}

// holdScript gives the lease (KEYS[1]) to holder ARGV[1] for ARGV[2] ms
// if no one else holds it, its holder extending it, and answers 1 if it
// did.
var holdScript = redis.NewScript(`
local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// HoldDelivery reports whether holder may deliver for the next ttl: a
// lease in Redis, which one instance holds at a time, and which lapses
// ttl after its holder last extended it.
func (s *Store) HoldDelivery(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	if err := s.writable(); err != nil {
		return false, err
	}
	held, err := holdScript.Run(ctx, s.rc, []string{deliveryLockKey}, holder, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10))
	if err != nil {
		return false, unavailable(err)
	}
	return held == int64(1), nil
}

// Recorded is signalled when this process has moved events into the log.
func (s *Store) Recorded() <-chan struct{} { return s.recorded }
