package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/redis"
)

// This file records events (internal/events), with Options.Events. A
// script in a cluster touches one hash slot, and a change and the global
// log are in different slots, so each change pushes its events onto an
// outbox in its own slot, in the script that makes it or in one right
// after it (recordScript) and before the call returns: the user's
// (wx:{u:<id>}:ev) or, for a claim, the person's (wx:{p:<hash>}:ev). The
// relay then moves an outbox's head into the log (wx:{ev}), numbering
// each event there, and pops what it moved. A relay cut short between the
// two moves the same events again: the log may hold an event twice, with
// one id, which receivers drop; it never loses one. The log is kept
// whole: Redis holds it until an operator trims it (XTRIM wx:{ev} MINID).
//
// Login, Update and the person they settle span slots, and the person id
// an event names is known only once settlePerson is done; so the user's
// hash keeps what its events announced so far ("ev_c" 1 once user.created
// is, "ev_u" the unionid, "ev_p" the person id, "ev_ph" the phone), and
// recordScript pushes whatever the record holds that they do not. A
// change whose recording was cut short (the process killed between the
// two; the call then failed) is announced at the user's next login or
// update. A record made before events were recorded (no "ev_c") is taken
// as announced as it stands by the next change's own script (baseline),
// so that turning -events on announces no user twice and misses no change.

// Keys of the events, as the layout in redisstore.go gives them.
const (
	eventLogKey     = "wx:{ev}"
	eventSeqKey     = "wx:{ev}:seq"
	deliveredKey    = "wx:{ev}:delivered"
	deliveryLockKey = "wx:{ev}:lock"
)

func userOutboxKey(id int64) string        { return userKey(id) + ":ev" }
func personOutboxKey(person string) string { return personHashKey(person) + ":ev" }

// relayBatch is how many events of an outbox one relay moves at a time.
const relayBatch = 100

// eventsLua is the Lua the scripts that record events share, put before
// each: phone_key, what "ev_ph" holds of a phone; person_id, the id of
// the person's earliest record as the user's hash's copy of its person's
// list (m) gives it, as Person does, or nil when that is no good copy;
// and baseline, which marks a record made before events were recorded as
// announced as it stands.
const eventsLua = `
local function phone_key(cc, phone)
  if not phone or phone == '' then return '' end
  return (cc or '') .. ' ' .. phone
end
local function person_id(k)
  local f = redis.call('HMGET', k, 'm', 'person', 'id')
  if not f[1] or not f[2] then return nil end
  local tag, list = string.match(f[1], '^(%x+)@%d+|(.*)$')
  if not tag or tag ~= string.sub(f[2], 1, 16) then return nil end
  local first, mine = nil, false
  for part in string.gmatch(list, '[^,]+') do
    local id = string.match(part, '^(%d+):')
    if id then
      if id == f[3] then mine = true end
      if not first or tonumber(id) < tonumber(first) then first = id end
    end
  end
  if not mine then return nil end
  return first
end
local function baseline(k)
  if redis.call('HEXISTS', k, 'ev_c') == 1 then return end
  local f = redis.call('HMGET', k, 'unionid', 'country_code', 'phone_number', 'id')
  redis.call('HSET', k, 'ev_c', '1', 'ev_u', f[1] or '', 'ev_ph', phone_key(f[2], f[3]), 'ev_p', person_id(k) or f[4])
end
`

// unannounced reports whether a user's hash (its HGETALL) holds a change
// its events have not announced: decided from the reply the change's own
// script gave, so that a login that changed nothing costs no round trip.
// A hash with no "ev_c" was last changed with events off.
func unannounced(hash any) bool {
	c := hashField(hash, "ev_c")
	phone := ""
	if p := hashField(hash, "phone_number"); p != "" {
		phone = hashField(hash, "country_code") + " " + p
	}
	return c != "" && (c != "1" || hashField(hash, "unionid") != hashField(hash, "ev_u") || phone != hashField(hash, "ev_ph"))
}

// recordScript pushes onto the user's outbox (KEYS[2]) the events of what
// the user's hash (KEYS[1]) holds that it has not announced, and marks it
// announced: user.created (ARGV[2], ARGV[3] around the person id); or
// person.joined when the unionid changed and with it the person id
// (ARGV[4..6] around the person id and the one before); and phone.bound
// (ARGV[7], ARGV[8]) when the phone is new and still the one the event
// tells (ARGV[9]; else the write that changed it records its own). The
// person id is the hash's copy's, or ARGV[1] when that is no good copy.
// It answers {how many it pushed, the outbox's head}, or {-1} when it
// needs ARGV[1] and has none.
var recordScript = redis.NewScript(eventsLua + `
local k, box = KEYS[1], KEYS[2]
if redis.call('HEXISTS', k, 'appid') == 0 then return {0, {}} end
local f = redis.call('HMGET', k, 'ev_c', 'ev_u', 'ev_p', 'ev_ph', 'unionid', 'country_code', 'phone_number')
if not f[1] then return {0, {}} end
local person = person_id(k)
if not person and ARGV[1] ~= '' then person = ARGV[1] end
if not person then return {-1} end
local n = 0
if f[1] ~= '1' then
  redis.call('RPUSH', box, ARGV[2] .. person .. ARGV[3])
  n = n + 1
elseif (f[5] or '') ~= (f[2] or '') and f[3] and f[3] ~= '' and person ~= f[3] then
  redis.call('RPUSH', box, ARGV[4] .. person .. ARGV[5] .. f[3] .. ARGV[6])
  n = n + 1
end
local phone, announced = phone_key(f[6], f[7]), f[4] or ''
if phone ~= announced and phone == ARGV[9] then
  if phone ~= '' then
    redis.call('RPUSH', box, ARGV[7] .. person .. ARGV[8])
    n = n + 1
  end
  announced = phone
end
redis.call('HSET', k, 'ev_c', '1', 'ev_u', f[5] or '', 'ev_p', person, 'ev_ph', announced)
return {n, redis.call('LRANGE', box, 0, 99)}
`)

// announce records the events of what user u's hash holds unannounced
// (recordScript), after settlePerson, so that they name u's person as it
// is now, and relays them. An error means they may not be recorded; a
// relay that fails only leaves them to the sweep.
func (s *Store) announce(ctx context.Context, u account.User) error {
	at := s.now()
	phone, phoneKey := []string{"", ""}, ""
	if u.PhoneNumber != "" {
		phone, phoneKey = holes(events.PhoneChanged(at, &u, personHole)), u.CountryCode+" "+u.PhoneNumber
	}
	args := slices.Concat([]string{""}, holes(events.Created(at, &u, personHole)),
		holes(events.Joined(at, &u, personHole, previousHole)), phone, []string{phoneKey})
	keys := []string{userKey(u.ID), userOutboxKey(u.ID)}
	for range 2 {
		reply, err := recordScript.Run(ctx, s.rc, keys, args...)
		if err != nil {
			return err
		}
		r, _ := reply.([]any)
		if len(r) == 1 && r[0] == int64(-1) {
			// The hash holds no good copy of its person's list (a spread
			// cut short): the person is read as GET /user would read it.
			_, members, ok, err := s.Person(ctx, u.ID)
			if err != nil || !ok {
				return err // erased meanwhile: nothing to announce
			}
			args[0] = strconv.FormatInt(members[0].ID, 10)
			continue
		}
		if len(r) != 2 {
			return fmt.Errorf("the record script answered %v", reply)
		}
		if r[0] != int64(0) {
			s.relayNow(ctx, keys[1], r[1])
		}
		return nil
	}
	return fmt.Errorf("user %d: no person id to record events with", u.ID)
}

// personHole and previousHole stand for the person ids a script fills in
// (holes): never an id.
const (
	personHole   = -1
	previousHole = -2
)

// holes is e's JSON cut where it holds personHole and previousHole: the
// pieces a script puts the person ids between. Nothing else in it can
// read as they do, its strings' quotes being escaped.
func holes(e events.Event) []string {
	text := string(e.Append(nil))
	var pieces []string
	for _, hole := range []string{`"person_id":` + strconv.Itoa(personHole), `"previous_person_id":` + strconv.Itoa(previousHole)} {
		before, after, found := strings.Cut(text, hole)
		if found {
			name, _, _ := strings.Cut(hole, ":")
			pieces = append(pieces, before+name+":")
			text = after
		}
	}
	return append(pieces, text)
}

// personIDOf is the id of user u's person's earliest record, as Person
// lists it: from the copy of the list the user's hash holds (reply), or
// else from its person's hash (person, its HGETALL).
func personIDOf(u account.User, reply, person any) int64 {
	members, ok := copiedMembers(u, reply)
	if !ok {
		members = append(membersIn(person), account.Member{ID: u.ID, AppID: u.AppID})
	}
	first := u.ID
	for _, m := range members {
		first = min(first, m.ID)
	}
	return first
}

// appendScript appends the events ARGV to the log (KEYS[1]), each with
// the next seq of the counter (KEYS[2]) as its id, "<seq>-1".
var appendScript = redis.NewScript(`
for i = 1, #ARGV do
  local seq = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], string.format('%d-1', seq), 'e', ARGV[i])
end
return #ARGV
`)

// popScript takes the events ARGV off the head of an outbox (KEYS[1]) if
// they are still there, and answers how many it took: none when another
// relay took them first.
var popScript = redis.NewScript(`
local head = redis.call('LRANGE', KEYS[1], 0, #ARGV - 1)
if #head ~= #ARGV then return 0 end
for i = 1, #ARGV do
  if head[i] ~= ARGV[i] then return 0 end
end
redis.call('LTRIM', KEYS[1], #ARGV, -1)
return #ARGV
`)

// relay moves the events of an outbox into the log, head first, from
// head, the outbox's head as read last (an LRANGE reply), until it is
// empty: each batch appended, then popped.
func (s *Store) relay(ctx context.Context, outbox string, head any) error {
	for {
		list, _ := head.([]any)
		batch := make([]string, 0, len(list))
		for _, v := range list {
			text, _ := v.(string)
			batch = append(batch, text)
		}
		if len(batch) == 0 {
			return nil
		}
		if err := s.appendEvents(ctx, batch); err != nil {
			return err
		}
		if _, err := popScript.Run(ctx, s.rc, []string{outbox}, batch...); err != nil {
			return err
		}
		if len(batch) < relayBatch {
			return nil
		}
		var err error
		if head, err = s.rc.Do(ctx, "LRANGE", outbox, "0", strconv.Itoa(relayBatch-1)); err != nil {
			return err
		}
	}
}

// appendEvents appends events, as their outbox holds them, to the log,
// and signals Recorded.
func (s *Store) appendEvents(ctx context.Context, batch []string) error {
	if _, err := appendScript.Run(ctx, s.rc, []string{eventLogKey, eventSeqKey}, batch...); err != nil {
		return err
	}
	select {
	case s.recorded <- struct{}{}:
	default:
	}
	return nil
}

// relayNow relays an outbox right after a write recorded events in it,
// so that one instance's events are in the log when its call returns. The
// write is durable already: a relay that fails is left to the sweep
// (RelayLeftovers), and the call succeeds.
func (s *Store) relayNow(ctx context.Context, outbox string, head any) {
	if err := s.relay(ctx, outbox, head); err != nil {
		s.log.Warn("events recorded, not yet in the log: the next sweep moves them", "outbox", outbox, "err", err)
	}
}

// RelayLeftovers moves into the log the events every outbox still holds:
// those of a relay that failed or was cut short, on this instance or
// another. Open runs it once with Options.Events; the caller runs it
// every minute after.
func (s *Store) RelayLeftovers(ctx context.Context) error {
	if err := s.writable(); err != nil {
		return err
	}
	var failed error
	for _, pattern := range []string{"wx:{u:*}:ev", "wx:{p:*}:ev"} {
		outboxes, err := s.rc.Scan(ctx, pattern)
		if err != nil {
			return unavailable(err)
		}
		for _, outbox := range outboxes {
			head, err := s.rc.Do(ctx, "LRANGE", outbox, "0", strconv.Itoa(relayBatch-1))
			if err == nil {
				err = s.relay(ctx, outbox, head)
			}
			failed = errors.Join(failed, err)
		}
	}
	return unavailable(failed)
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
