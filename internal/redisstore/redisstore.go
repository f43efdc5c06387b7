// Package redisstore is the store in Redis (-redis): the users, persons,
// claims, tokens and session_keys of every wxlogin that shares one Redis or
// Redis Cluster, in place of the data directory and the in-memory tokens;
// and what those instances share besides: each app's access_token
// (AccessTokens), the code exchanges under way (Exchanges) and the login
// limit (LoginLimiter). The handlers hold a Store as they hold the file
// store, by the interfaces the root's store.go declares, and the WeChat
// client holds the shared values by its own. A call Redis does not answer
// fails with ErrUnavailable, which the handlers answer with 503.
//
// Each call touches one hash slot, so that it is one atomic command or
// script on one server, in a cluster as on a single Redis; where a script
// may touch several slots (crossSlot: a single Redis), a new user's id,
// its person's join and the relay of events take one script each:
//
//	wx:meta                     STRING  {"mode":…,"appids":[…]}: what the file store's headers say
//	wx:person-key               STRING  the key of the persons' keyed hashes (account.PersonHash), hex
//	wx:ids                      STRING  the last user id given (INCRBY); ids are never given twice,
//	                                    even when it falls behind its records (Login)
//	wx:{o:<appid>:<openid>}     STRING  the user id of (appid, openid)
//	wx:{u:<id>}                 HASH    the record's fields; "v" its version, "person" its person's hash,
//	                                    "m" a copy of the person's records (so GET /user reads one key),
//	                                    "joined" the person it last joined whole (joinPerson),
//	                                    "linked" its unionid once linked after a change (redislink.go),
//	                                    with -events "merging" the ids of the persons that link merges
//	                                    into its own, until their person.joined is pushed (markLinked),
//	                                    "own" its app's and openid's hash while a new user is still to
//	                                    take the claims kept there (takeOwnClaims); after an erasure
//	                                    only "erased", and until its last steps are done the user's
//	                                    "left_appid", "left_openid" and "left_person" (finishErasure)
//	wx:{u:<id>}:ev              LIST    with -events, the user's events not yet moved into wx:{ev}, oldest
//	                                    first: its outbox, in the slot of the changes that push them;
//	                                    the relay (RunRelay, in the background) empties it
//	wx:{u:<id>}:sk              HASH    "sk" the session_key, "psk" and "psk_at" the one it replaced,
//	                                    "prune" the size of :tokens that calls for its pruning (Issue);
//	                                    it expires -token-max-age after the last login, with the tokens
//	wx:{u:<id>}:t:<sha256>      HASH    one token, by the hex of its hash: "i" issued, "l" last used
//	                                    (Unix ms); it expires with the token
//	wx:{u:<id>}:tokens          SET     the hashes of the user's tokens, for revoking them all; it
//	                                    expires with :sk
//	wx:{p:<hash>}               HASH    a person, by the keyed hash of its unionid (or app and openid):
//	                                    "u:<id>" → appid for each of its records, "c:<name>" → a claim,
//	                                    "ver" the count of its changes; or only "alias", the person
//	                                    it was merged into (redislink.go), or, of an erased user's app
//	                                    and openid, the user's person (Erase)
//	wx:{p:<hash>}:ev            LIST    with -events, the person's claim.taken events not yet moved
//	wx:{ev}                     STREAM  with -events, the log: "e" each event's JSON, numbered by its
//	                                    entry id "<seq>-1"; kept until an operator trims it
//	wx:{ev}:seq                 STRING  the last seq given
//	wx:{ev}:delivered           STRING  the seq through which the webhook delivered every event
//	wx:{ev}:lock                STRING  the instance delivering the events, for a lease (HoldDelivery)
//	wx:{ev}:relays              HASH    each instance's relay → when its lease ends, in Redis's Unix ms
//	wx:{ev}:phones              HASH    user id → the seqs of its phone.bound events, "<seq>,<seq>…",
//	                                    which its erasure deletes from the log (forgetPhonesScript)
//	wx:{ev}:forgotten           SET     the ids of erased users, whose phone.bound no relay appends
//	wx:erasing                  ZSET    user id → when its erasure began (Unix ms), until the steps
//	                                    after its tombstone are done (FinishErasures)
//	wx:{a:<appid>}[:lock]       STRING  the app's shared access_token, and who fetches it (AccessTokens)
//	wx:{x:<appid>:<hash>}       STRING  a code's exchange under way, then its answer (Exchanges)
//	wx:{l:<address>}            HASH    a client address's login bucket (LoginLimiter)
//
// A token is "<user id>.<random>", so the slot of its keys is known from
// the token itself. Claims live under the person's keyed hash from the
// start, so an erasure leaves them in place, naming nobody, as the file
// store's kept claims do. Lifetimes are measured on the instances' wall
// clocks, passed to each script: several machines share no monotonic clock.
package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/events"
	"wxlogin/internal/redis"
)

// Store is the store in Redis: the users and their claims, as the
// handlers' userBackend, and the tokens with each user's session_key, as
// their tokenBackend. It is safe for concurrent use, by any number of
// instances on one Redis.
type Store struct {
	rc           *redis.Client
	now          func() time.Time
	ttl, maxAge  time.Duration
	keepPrevious time.Duration // Options.PreviousKeyWindow
	log          *slog.Logger
	personKey    []byte
	ids          idCache // (appid, openid) → user id, known here
	// weak, with -redis-durability=fsync, is why a master no longer keeps
	// each write as it must, nil while all do (WatchDurability): writes
	// are refused meanwhile.
	weak atomic.Pointer[durabilityError]
	// events is Options.Events; recorded is signalled when this process
	// moved events into the log (redisevents.go).
	events   bool
	recorded chan struct{}
	// relayMu guards noted, the outboxes this process pushed events onto
	// since the relay last took them, each once, in the order of their
	// first push, and troubled, those set aside for what they hold; wake
	// tells the relay of them (RunRelay).
	relayMu  sync.Mutex
	noted    []string
	troubled []string
	wake     chan struct{}
	// relaying is held by the relay at work, so that the background relay
	// and the sweep do not move the same events twice.
	relaying sync.Mutex
	// relayID names this process's relay in wx:{ev}:relays, where it
	// renews its lease every beat; sweepOwed says a sweep is to be made
	// (another relay's lease lapsed, or a sweep failed), and sweeping that
	// one is under way.
	relayID             string
	beat, lease         time.Duration
	sweepOwed, sweeping atomic.Bool
	// relayMax is the most events one relay script reads (relayMax).
	relayMax int
	// crossSlot says one script may touch keys of different hash slots
	// (crossSlot): a new user's id, its person's join and the relay then
	// take one script each.
	crossSlot bool
	// erasing tells RunErasures of an erasure of this process cut short;
	// failErase, set by tests, fails a step of an erasure's finish.
	erasing   chan struct{}
	failErase func(step string) error
	// beforeTombstone, set by tests, runs between an erasure's read of
	// the user and its tombstone.
	beforeTombstone func()
	// beforeRejoin, set by tests, runs between takeOwnClaims's read of a
	// user's person and its move to the person it rejoins.
	beforeRejoin func()
}

// Options is what a Store is opened with.
type Options struct {
	// Durability is what an acknowledged write must survive
	// (-redis-durability): Fsync or Unchecked.
	Durability string
	// Meta binds Redis to a mode and its apps, as the file store's
	// headers bind a data directory.
	Meta account.Meta
	// TokenTTL is how long a token lives after its last use (-token-ttl),
	// and TokenMaxAge how long after it was issued at most
	// (-token-max-age).
	TokenTTL, TokenMaxAge time.Duration
	// PreviousKeyWindow is how long after a login replaced a user's
	// session_key the one it replaced is still given with a token, for
	// data fetched before the login.
	PreviousKeyWindow time.Duration
	Now               func() time.Time
	// Log is told of a durability left unchecked, and of Redis weakened
	// and restored while serving (WatchDurability).
	Log *slog.Logger
	// Events records an event with each change other services follow
	// (-events; redisevents.go). Off, the store sends Redis not one
	// command more than it did before events existed.
	Events bool
}

// idCache keeps the user ids of (appid, openid) this instance has seen,
// which saves a returning user's login the round trip to their openid's
// key. An id never changes until the user is erased, and the login script
// tells that (the id's hash is a tombstone): the login then forgets it and
// asks Redis. Bounded: a full cache forgets an eighth of its ids.
type idCache struct {
	mu  sync.Mutex
	ids map[account.Ref]int64
}

// maxCachedIDs bounds the cache: about 100 bytes an id.
const maxCachedIDs = 200_000

func (c *idCache) get(ref account.Ref) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[ref]
	return id, ok
}

func (c *idCache) put(ref account.Ref, id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[account.Ref]int64{}
	}
	if len(c.ids) >= maxCachedIDs {
		n := 0
		for r := range c.ids {
			if n >= maxCachedIDs/8 {
				break
			}
			delete(c.ids, r)
			n++
		}
	}
	c.ids[ref] = id
}

func (c *idCache) forget(ref account.Ref) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.ids, ref)
}

// Keys, as the layout above gives them.
const (
	metaKey      = "wx:meta"
	personKeyKey = "wx:person-key"
	idsKey       = "wx:ids"
)

func userKey(id int64) string       { return "wx:{u:" + strconv.FormatInt(id, 10) + "}" }
func tokenSetKey(id int64) string   { return userKey(id) + ":tokens" }
func sessionKeyKey(id int64) string { return userKey(id) + ":sk" }
func openIDKey(appID, openID string) string {
	return "wx:{o:" + appID + ":" + openID + "}"
}
func personHashKey(person string) string { return "wx:{p:" + person + "}" }
func tokenKey(id int64, hash string) string {
	return userKey(id) + ":t:" + hash
}

// Redis durability policies, -redis-durability.
const (
	// Fsync needs every master to append each write to its AOF and
	// fsync it before it answers (appendonly yes, appendfsync always):
	// an acknowledged login survives a crash of Redis, as with the files.
	Fsync = "fsync"
	// Unchecked takes the operator's word: for a managed Redis that
	// hides CONFIG, or a cache-grade setup where losing the last second of
	// writes is accepted.
	Unchecked = "unchecked"
)

// ErrUnavailable is what the errors of a call Redis could not serve are
// (errors.Is), for the store and the shared values alike: Redis did not
// answer, or writes are refused while it does not keep them as the
// durability policy needs. The handlers answer it with status -1 and 503,
// and a Retry-After of RetryAfter.
var ErrUnavailable = errors.New("the store in Redis is unavailable")

// RetryAfter is when a call that failed with ErrUnavailable is worth
// trying again.
const RetryAfter = time.Second

// unavailableError is a cause marked as ErrUnavailable. It reads as its
// cause, which the log shows.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string        { return e.cause.Error() }
func (e *unavailableError) Unwrap() error        { return e.cause }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// unavailable marks err, the error of a call Redis did not answer, as
// ErrUnavailable; an error marked already, or account.ErrNoUser, stays as
// it is.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, account.ErrNoUser) {
		return err
	}
	return &unavailableError{cause: err}
}

// Open opens the store on rc, which stays the caller's to close: it
// checks that Redis keeps writes as the durability policy needs, and binds
// it to the mode and apps as the file store's headers do: a Redis first
// used in mock mode is refused in real mode, and the other way round.
func Open(ctx context.Context, rc *redis.Client, o Options) (*Store, error) {
	s := &Store{rc: rc, now: o.Now, ttl: o.TokenTTL, maxAge: o.TokenMaxAge, keepPrevious: o.PreviousKeyWindow, log: o.Log,
		events: o.Events, recorded: make(chan struct{}, 1), wake: make(chan struct{}, 1), erasing: make(chan struct{}, 1),
		relayID: randomText(8, hex.EncodeToString), beat: relayBeat, lease: relayLease, relayMax: relayMax}
	if err := s.open(ctx, o.Durability, o.Meta); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	s.crossSlot = crossSlot(ctx, rc)
	if s.events {
		// The lease is taken before any event is pushed, so that another
		// instance sweeps if this one is killed; the events of an instance
		// stopped before relaying go into the log now.
		s.sweepOwed.Store(true)
		s.renewLease(ctx)
		s.sweep(ctx)
	}
	return s, nil
}

// crossSlot reports whether one script on rc may touch keys of different
// hash slots: on one Redis server it may, but not on a Cluster, nor
// behind a proxy that spreads one over several (as some clouds' Redis
// clusters are served), which refuses such a script. A script that
// touches no key asks, with two keys of different slots.
func crossSlot(ctx context.Context, rc *redis.Client) bool {
	if rc.Cluster() {
		return false
	}
	_, err := rc.Do(ctx, "EVAL", "return 1", "2", "wx:{slot:a}", "wx:{slot:b}")
	return err == nil
}

func (s *Store) open(ctx context.Context, durability string, meta account.Meta) error {
	if _, err := s.rc.Do(ctx, "PING"); err != nil {
		return err
	}
	switch durability {
	case Fsync:
		if err := checkFsync(ctx, s.rc); err != nil {
			return err
		}
	case Unchecked:
		s.log.Warn("Redis durability unchecked (-redis-durability=unchecked): an acknowledged write is only as safe as Redis's own persistence")
	default:
		return fmt.Errorf("-redis-durability=%q: want %s or %s", durability, Fsync, Unchecked)
	}
	metaJSON, _ := json.Marshal(meta) // Cannot fail: plain data.
	stored, err := setOnce(ctx, s.rc, metaKey, string(metaJSON))
	if err != nil {
		return err
	}
	var was account.Meta
	if err := json.Unmarshal([]byte(stored), &was); err != nil {
		return fmt.Errorf("%s holds %q, not what wxlogin writes", metaKey, stored)
	}
	if was.Mode != meta.Mode {
		return fmt.Errorf("this Redis holds the users of %s mode; wxlogin is in %s mode: in mock mode anyone can log in as anyone, so the two never share a store (use another Redis or database)", was.Mode, meta.Mode)
	}
	key, err := setOnce(ctx, s.rc, personKeyKey, randomText(sha256.Size, hex.EncodeToString))
	if err != nil {
		return err
	}
	if s.personKey, err = hex.DecodeString(key); err != nil || len(s.personKey) != sha256.Size {
		return fmt.Errorf("%s is not %d bytes of hex", personKeyKey, sha256.Size)
	}
	return nil
}

// setOnce sets key to value unless it is set, and returns what it holds:
// of instances starting at once, the first one's value wins for all.
func setOnce(ctx context.Context, rc *redis.Client, key, value string) (string, error) {
	replies, err := rc.Pipeline(ctx, [][]string{{"SET", key, value, "NX"}, {"GET", key}})
	if err != nil {
		return "", err
	}
	got, ok := replies[1].(string)
	if !ok {
		return "", fmt.Errorf("GET %s answered %v", key, replies[1])
	}
	return got, nil
}

// checkFsync checks that every master appends each write to its AOF
// and fsyncs it before answering. Redis answers a write only after
// appendfsync always has fsynced it, so an acknowledged write is on disk.
// A master that does not, or will not say, is a *durabilityError;
// any other error is Redis's not answering.
func checkFsync(ctx context.Context, rc *redis.Client) error {
	replies, err := rc.OnEachServer(ctx, [][]string{{"CONFIG", "GET", "appendonly"}, {"CONFIG", "GET", "appendfsync"}})
	if err != nil {
		return err
	}
	for addr, r := range replies {
		if e, refused := r[0].(redis.Error); refused {
			return &durabilityError{fmt.Sprintf("%s refuses CONFIG GET (%v), so wxlogin cannot check that it fsyncs each write; if its persistence is known to be enough (a managed Redis), start with -redis-durability=unchecked (docs/redis.md)", addr, e)}
		}
		appendOnly, fsync := configValue(r[0]), configValue(r[1])
		if appendOnly != "yes" || fsync != "always" {
			return &durabilityError{fmt.Sprintf("%s has appendonly %s and appendfsync %s: an acknowledged login could be lost in a crash of Redis; set appendonly yes and appendfsync always, or accept that with -redis-durability=unchecked (docs/redis.md)", addr, appendOnly, fsync)}
		}
	}
	return nil
}

// durabilityError says which master does not keep each write as
// -redis-durability=fsync needs, and which setting, or that it will not
// say.
type durabilityError struct{ msg string }

func (e *durabilityError) Error() string { return e.msg }

// durabilityCheckEvery is how often a running wxlogin asks the masters
// again (WatchDurability): two CONFIG GETs on each, and writes refused a
// second at most after a CONFIG SET that weakens one.
const durabilityCheckEvery = time.Second

// WatchDurability asks every master, each second until ctx ends, whether
// it still fsyncs each write (checkDurability): with Fsync, checked once
// at the start, a CONFIG SET appendfsync everysec afterwards, or a
// failover to a replica set up so, would otherwise leave wxlogin
// acknowledging writes a crash of Redis could lose.
func (s *Store) WatchDurability(ctx context.Context) {
	t := time.NewTicker(durabilityCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.checkDurability(ctx)
	}
}

// checkDurability asks the masters once. While one does not fsync each
// write, or will not say, writes are refused as when Redis cannot be
// reached (writable), and /healthz answers 503; the log says so once, at
// error level, naming the master and the setting, and once more when it
// is restored, and wxlogin serves again. A master that does not answer
// changes nothing: the calls to it fail meanwhile.
func (s *Store) checkDurability(ctx context.Context) {
	err := checkFsync(ctx, s.rc)
	var weak *durabilityError
	switch {
	case errors.As(err, &weak):
		if s.weak.Swap(weak) == nil {
			s.log.Error("Redis no longer keeps each write safe: writes are refused until it does", "err", weak)
		}
	case err == nil:
		if s.weak.Swap(nil) != nil {
			s.log.Info("Redis keeps each write safe again: writes are accepted")
		}
	}
}

// writable is nil while Redis keeps each write as the durability policy
// needs; otherwise ErrUnavailable, with why.
func (s *Store) writable() error {
	if weak := s.weak.Load(); weak != nil {
		return unavailable(weak)
	}
	return nil
}

// configValue is the value of a CONFIG GET reply of one parameter.
func configValue(reply any) string {
	pair, _ := reply.([]any)
	if len(pair) != 2 {
		return "(unknown)"
	}
	v, _ := pair[1].(string)
	return v
}

// Health pings Redis, for /healthz: ErrUnavailable while it cannot be
// reached, or while writes are refused.
func (s *Store) Health(ctx context.Context) error {
	if err := s.writable(); err != nil {
		return err
	}
	_, err := s.rc.Do(ctx, "PING")
	return unavailable(err)
}

// PersonHash is who a user is across apps, keyed as the file store's
// hashes are when it was moved here (wxlogin to-redis): the tools that
// move a store count its persons by it.
func (s *Store) PersonHash(appID, openID, unionID string) string {
	return account.PersonHash(s.personKey, appID, openID, unionID)
}

// stamp is now in UTC, to the given precision.
func (s *Store) stamp(precision time.Duration) time.Time {
	return s.now().UTC().Truncate(precision)
}

// loginLua records a login on the user's hash (login(k, outbox), for
// the scripts below): it creates the record if there is none, otherwise
// sets a newly learned unionid (and with it the person), or a changed one
// (keeping the person: linkUnionID); it stamps last_login_at. It creates a
// record only for an id the openid's key gave (ARGV[7] is 1), never for
// one this instance remembered. It answers -1 for an erased user or a
// record it may not create, -2 when the id holds another user's record,
// which it leaves as it is, else whether it created the record (1 or 0)
// and how many events it pushed. Being in one script, it is what gives an
// id to one user only: of two logins whose openids' keys name one id, the
// first creates the record and the other is told -2.
// It stamps last_login_at (ARGV[5]) only on a record it changes or whose
// last_login_at is before ARGV[8], account.LastLoginEvery ago (or after
// ARGV[5]): most returning logins write nothing, and Redis appends and
// fsyncs nothing for them.
// With events (outbox, the user's, not nil) it pushes there the record's
// user.created (ARGV[9]) when it creates it, and a person.joined (ARGV[10],
// ARGV[11] around the person id the user had) when it sets a unionid
// (redisevents.go). It answers -3, changing nothing, when it needs one of
// them and was not given it: most logins need neither, and the caller
// makes them only when asked.
// A record it creates is marked "own" ARGV[12], if given and not "": the
// app's and openid's hash whose kept claims the new user is to take
// (takeOwnClaims), until they are taken.
const loginLua = `
local function login(k, outbox)
  local f = redis.call('HMGET', k, 'erased', 'appid', 'openid', 'unionid', 'last_login_at')
  if f[1] then return -1 end
  local created, pushed, changed = 0, 0, false
  if not f[2] then
    if ARGV[7] ~= '1' then return -1 end
    if outbox and ARGV[9] == '' then return -3 end
    redis.call('HSET', k, 'id', ARGV[1], 'appid', ARGV[2], 'openid', ARGV[3], 'person', ARGV[6],
      'created_at', ARGV[5], 'updated_at', ARGV[5], 'v', '1')
    if ARGV[4] ~= '' then redis.call('HSET', k, 'unionid', ARGV[4]) end
    if ARGV[12] and ARGV[12] ~= '' then redis.call('HSET', k, 'own', ARGV[12]) end
    created, changed = 1, true
    if outbox then pushed = redis.call('RPUSH', outbox, ARGV[9]) end
  else
    if f[2] ~= ARGV[2] or f[3] ~= ARGV[3] then return -2 end
    local old = f[4]
    if ARGV[4] ~= '' and old ~= ARGV[4] then
      if outbox and ARGV[10] == '' then return -3 end
      if outbox then
        pushed = redis.call('RPUSH', outbox, ARGV[10] .. (person_id(k) or ARGV[1]) .. ARGV[11])
      end
      changed = true
      -- The unionid leaves previous_unionids if it was there (a user back
      -- through an alias has those of its person: joinPersonFollowing), as
      -- account.User.SetUnionID does.
      local previous, had = {}, false
      for id in string.gmatch(redis.call('HGET', k, 'previous_unionids') or '', '%S+') do
        had = true
        if id ~= ARGV[4] then table.insert(previous, id) end
      end
      if old or had then
        -- A new unionid for the same openid (the app moved to another Open
        -- Platform account), or a first one for a user back through an
        -- alias, which holds its person's: the user stays in their person,
        -- which its unionids name (the new one linked: linkUnionID), the
        -- old one kept among previous_unionids.
        if old then table.insert(previous, old) end
        redis.call('HSET', k, 'unionid', ARGV[4], 'updated_at', ARGV[5])
      else
        leave(k, ARGV[6])
        redis.call('HSET', k, 'unionid', ARGV[4], 'updated_at', ARGV[5], 'person', ARGV[6])
      end
      if #previous > 0 then
        redis.call('HSET', k, 'previous_unionids', table.concat(previous, ' '))
      else
        redis.call('HDEL', k, 'previous_unionids')
      end
      redis.call('HINCRBY', k, 'v', 1)
    end
  end
  local last = f[5] -- as it was: a record changed is stamped whatever it held
  if changed or not last or last <= ARGV[8] or last > ARGV[5] then redis.call('HSET', k, 'last_login_at', ARGV[5]) end
  return created, pushed
end
`

// leaveLua is leave(k, person) for the scripts that move user k to
// person: a user's hash that records no join ("joined") is given the
// person it leaves as the one it joined, so that its join to person brings
// that person's claims along and takes the user out of it (joinPerson),
// as for any user who moves. Such a hash is one imported before Import
// wrote "joined", or a new user's whose first join was cut short: without
// it, the claims of the person it leaves would stay behind, and a gift
// taken there could be taken again.
const leaveLua = `
local function leave(k, person)
  local f = redis.call('HMGET', k, 'person', 'joined')
  if f[1] and not f[2] and f[1] ~= person then redis.call('HSET', k, 'joined', f[1]) end
end
`

// loginScript is a login (loginLua) on the user's hash KEYS[1], with
// events onto its outbox KEYS[2]: it answers {-1}, {-2} or {-3} as login
// does, else {created, the record's fields, how many events it pushed}.
var loginScript = redis.NewScript(eventsLua + leaveLua + loginLua + `
local created, pushed = login(KEYS[1], KEYS[2])
if created < 0 then return {created} end
return {created, redis.call('HGETALL', KEYS[1]), pushed}
`)

// loginIssueScript is a login (loginLua) and the token it issues
// (issueLua) in one: a login, then a token for the user it recorded, in
// one round trip. KEYS are the user's hash, its :sk, its :tokens, the
// token's key and, with events, its outbox; ARGV are loginLua's, 12 of
// them, then issueLua's from the 13th. It answers as loginScript, having
// issued the token unless it answers {-1}, {-2} or {-3}, with a fourth
// element: 1 when the set of the user's tokens is due to be pruned
// (pruneTokens), else 0.
var loginIssueScript = redis.NewScript(eventsLua + leaveLua + loginLua + issueLua + `
local created, pushed = login(KEYS[1], KEYS[5])
if created < 0 then return {created} end
local prune = issue(KEYS[4], KEYS[3], KEYS[2], 13)
return {created, redis.call('HGETALL', KEYS[1]), pushed, prune and 1 or 0}
`)

// Login records a login of (appID, openID). The user's id is the one the
// (appid, openid) key holds; the first login to set it (SET NX) decides it
// for everyone, and exactly one login creates the record. An id taken from
// wx:ids by a login that lost that race is never used: ids have gaps.
//
// wx:ids can be behind the records: a Cluster failover to a replica that
// missed the last INCRs, a restore of an older AOF. An id it gives again is
// held already, by a record or an erasure, and the login script, which
// alone creates records, refuses it ({-1}, {-2}); the login then takes the
// id away from its openid's key and takes another from wx:ids, a step
// further each time (1, 2, 4 …), so that the counter is past the ids held
// after a few tries, whatever the lag. No id ever changes owner, and a
// normal login makes no round trip more for it. The same heals an openid's
// key that names another user's id, which wxlogin wrote before it did this.
func (s *Store) Login(ctx context.Context, appID, openID, unionID string) (account.User, bool, error) {
	u, created, _, err := s.login(ctx, appID, openID, unionID, nil)
	return u, created, err
}

// LoginWithToken is Login, then Issue of a token for the user, whose
// session_key key becomes, in one script (loginIssueScript): a returning
// user's login is one round trip. The token is issued only to the user the
// login recorded, so a user erased meanwhile is not given one: the login
// is then a new user's, as the next would be.
func (s *Store) LoginWithToken(ctx context.Context, appID, openID, unionID, key string) (account.User, bool, string, error) {
	return s.login(ctx, appID, openID, unionID, &key)
}

// login is Login, and with key not nil LoginWithToken.
func (s *Store) login(ctx context.Context, appID, openID, unionID string, key *string) (account.User, bool, string, error) {
	if err := s.writable(); err != nil {
		return account.User{}, false, "", err
	}
	at := s.stamp(time.Second)
	now, recorded := formatTime(at), formatTime(at.Add(-account.LastLoginEvery))
	person := s.PersonHash(appID, openID, unionID)
	ref := account.Ref{AppID: appID, OpenID: openID}
	step := int64(1)   // how far the next id taken from wx:ids jumps
	allEvents := false // whether the login script asked for every event it may push
	for range maxIDTries {
		id, known := s.ids.get(ref)
		fresh := false // whether id was just taken from wx:ids for this login
		// Whether the app's and openid's hash may hold claims of this user
		// erased before (takeOwnClaims): on one server the id script looks.
		// A record created is marked with it until they are taken.
		ownHash := ""
		if unionID != "" {
			ownHash = s.PersonHash(appID, openID, "")
		}
		if !known {
			var err error
			if id, fresh, ownHash, err = s.userID(ctx, appID, openID, step, ownHash); err != nil {
				return account.User{}, false, "", unavailable(err)
			}
		}
		mayCreate := "1"
		if known {
			mayCreate = "0" // a remembered id whose record is gone is not to be made again
		}
		script, keys := loginScript, []string{userKey(id)}
		var token string
		var issueArgs []string
		if key != nil {
			script = loginIssueScript
			token, keys, issueArgs = s.newToken(id, *key)
		}
		outbox, events := "", []string{"", "", ""}
		if s.events {
			outbox = userOutboxKey(id)
			keys = append(keys, outbox)
			// A new user's user.created is made before it is asked for.
			events = s.loginEvents(id, appID, unionID, fresh || allEvents, allEvents)
		}
		args := []string{strconv.FormatInt(id, 10), appID, openID, unionID, now, person, mayCreate, recorded}
		args = append(append(append(args, events...), ownHash), issueArgs...)
		reply, err := script.Run(ctx, s.rc, keys, args...)
		if err != nil {
			return account.User{}, false, "", unavailable(err)
		}
		r, _ := reply.([]any)
		if len(r) == 1 && r[0] == int64(-3) && !allEvents {
			allEvents = true // the script needs an event it was not given
			continue
		}
		if len(r) == 1 {
			// Not this user's: erased, a remembered id with no record, or
			// another user's. The id is forgotten and the openid's key asked
			// again. A key that named it is taken away (if it still does):
			// an erasure that had not taken it away yet (it was cut short),
			// or an id wx:ids gave again; this is a new user, whose id is
			// further on.
			s.ids.forget(ref)
			if !known {
				if err := s.forgetOpenID(ctx, appID, openID, id); err != nil {
					return account.User{}, false, "", unavailable(err)
				}
			}
			if fresh {
				step *= 2 // wx:ids is behind its records
			}
			continue
		}
		if len(r) != 3 && (key == nil || len(r) != 4) {
			return account.User{}, false, "", unavailable(errors.New("the login script answered something else"))
		}
		if len(r) == 4 && r[3] == int64(1) {
			s.pruneTokens(ctx, id)
		}
		created, _ := r[0].(int64)
		u, err := readRecord(r[1])
		if err == nil {
			err = s.settlePerson(ctx, u, r[1])
		}
		if own := hashField(r[1], "own"); err == nil && own != "" {
			err = s.takeOwnClaims(ctx, u.ID, own) // also a creation's cut short before it
		}
		if err == nil && created == 0 && r[2] != int64(0) {
			err = s.pinJoins(ctx, id) // a returning login pushes a person.joined only
		}
		if r[2] != int64(0) {
			s.note(outbox) // pushed, and durable: to relay even if the login fails now
		}
		if err != nil {
			return account.User{}, false, "", unavailable(err)
		}
		s.ids.put(ref, id)
		return u, created == 1, token, nil
	}
	return account.User{}, false, "", unavailable(fmt.Errorf("login: %d ids in a row from %s were held already or erased", maxIDTries, idsKey))
}

// maxIDTries bounds the ids one login tries. Their steps doubling, the
// last jumps 2^15 ids: one login moves wx:ids past a lag of 65 535, and
// the logins after it past any lag.
const maxIDTries = 16

// userID is the id of (appID, openID), given now if it has none: the
// counter moved on by step, which fresh reports. It answers ownHash, a
// person's hash, as it is, or "" where it knows that no key holds it (on
// one server, where the id script looks).
func (s *Store) userID(ctx context.Context, appID, openID string, step int64, ownHash string) (id int64, fresh bool, own string, err error) {
	key := openIDKey(appID, openID)
	v, given, own, err := s.idOf(ctx, key, step, ownHash)
	if err != nil {
		return 0, false, "", err
	}
	text, _ := v.(string)
	id, err = strconv.ParseInt(text, 10, 64)
	if err != nil || id < 1 {
		return 0, false, "", fmt.Errorf("%s holds %v, not a user id", key, v)
	}
	return id, text == given, own, nil
}

// idOf is what the openid's key holds, after giving it the next id of
// wx:ids if it held none, and the id given ("" for none). On one server it
// is one script (idScript). A Cluster's script cannot touch the openid's
// key and wx:ids both, in different slots (crossSlot): there it is a GET
// and, for a new user, an INCRBY and a SET NX, the first login to set the
// key deciding it for every instance. It also says whether the person's
// hash ownHash (if not "") is a key: own is ownHash if it is, and "" if
// it is not; on a Cluster asked with the GET, at once.
func (s *Store) idOf(ctx context.Context, key string, step int64, ownHash string) (v any, given, own string, err error) {
	if s.crossSlot {
		keys := []string{key, idsKey}
		if ownHash != "" {
			keys = append(keys, personHashKey(ownHash))
		}
		reply, err := idScript.Run(ctx, s.rc, keys, strconv.FormatInt(step, 10))
		if err != nil {
			return nil, "", "", err
		}
		r, _ := reply.([]any)
		if len(r) != 3 {
			return nil, "", "", fmt.Errorf("the id script answered %v", reply)
		}
		given, _ = r[1].(string)
		if r[2] == int64(0) {
			ownHash = ""
		}
		return r[0], given, ownHash, nil
	}
	groups := [][][]string{{{"GET", key}}}
	if ownHash != "" {
		groups = append(groups, [][]string{{"EXISTS", personHashKey(ownHash)}})
	}
	replies, err := s.rc.PipelineEach(ctx, groups)
	if err != nil {
		return nil, "", "", err
	}
	for _, r := range replies {
		if refused, ok := r[0].(redis.Error); ok {
			return nil, "", "", refused
		}
	}
	if len(replies) == 2 && replies[1][0] == int64(0) {
		ownHash = ""
	}
	if v = replies[0][0]; v != nil {
		return v, "", ownHash, nil
	}
	n, err := s.rc.Do(ctx, "INCRBY", idsKey, strconv.FormatInt(step, 10))
	if err != nil {
		return nil, "", "", err
	}
	given = strconv.FormatInt(n.(int64), 10)
	set, err := s.rc.Pipeline(ctx, [][]string{{"SET", key, given, "NX"}, {"GET", key}})
	if err != nil {
		return nil, "", "", err
	}
	return set[1], given, ownHash, nil
}

// idScript answers what the openid's key (KEYS[1]) holds, {v, "", e}, or
// gives it the id wx:ids (KEYS[2]) moved on by ARGV[1] gives, {id, id,
// e}; e is whether the person's hash KEYS[3], if given, is a key (0 or 1).
// Lua's numbers hold ids exactly up to 2^53, far past any wx:ids reaches.
var idScript = redis.NewScript(`
local own = KEYS[3] and redis.call('EXISTS', KEYS[3]) or 0
local v = redis.call('GET', KEYS[1])
if v then return {v, '', own} end
local id = string.format('%d', redis.call('INCRBY', KEYS[2], ARGV[1]))
redis.call('SET', KEYS[1], id)
return {id, id, own}
`)

// forgetOpenIDScript deletes the key of (appid, openid) if it still names
// the erased user, and not a new one.
var forgetOpenIDScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`)

func (s *Store) forgetOpenID(ctx context.Context, appID, openID string, id int64) error {
	_, err := forgetOpenIDScript.Run(ctx, s.rc, []string{openIDKey(appID, openID)}, strconv.FormatInt(id, 10))
	return err
}

// mergeClaimsScript adds claims to a person, keeping the earliest of each
// name: their values start with the Unix milliseconds they were made at.
var mergeClaimsScript = redis.NewScript(`
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if not old or tonumber(string.match(ARGV[i+1], '^%d+')) < tonumber(string.match(old, '^%d+')) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1])
  end
end
return 1
`)

// joinPerson makes user u a record of its person, if the user's hash
// does not say it is one already ("joined" names the person it last
// joined whole), and, when a unionid learned since moved it from the
// person it was alone (joined), brings that person's claims along, the
// earliest of each name counting. Each step may be done twice: a join cut
// short (Redis lost, the process killed) is done again at the user's next
// login. A claim made by the same user at the very moment of a move may
// count twice.
func (s *Store) joinPerson(ctx context.Context, u account.User, joined, person string) error {
	if joined == person {
		return nil
	}
	member := "u:" + strconv.FormatInt(u.ID, 10)
	if joined == "" {
		// Nothing to bring along (a new user, or one whose first join was
		// cut short): the copy of the list it is given records the join.
		return s.spreadMembers(ctx, person, u.ID, "add", member, u.AppID)
	}
	if err := s.spreadMembers(ctx, person, 0, "add", member, u.AppID); err != nil {
		return err
	}
	fields, err := s.rc.Do(ctx, "HGETALL", personHashKey(joined))
	if err != nil {
		return err
	}
	if err := s.copyClaims(ctx, fields, person); err != nil {
		return err
	}
	var merged *aliasError // the person left was merged into another since: nothing to take out
	if err := s.spreadMembers(ctx, joined, 0, "del", member); err != nil && !errors.As(err, &merged) {
		return err
	}
	_, err = setJoinedScript.Run(ctx, s.rc, []string{userKey(u.ID)}, person)
	return err
}

// copyClaims adds the claims of a person's hash (fields, its HGETALL) to
// person into, the earliest of each name counting.
func (s *Store) copyClaims(ctx context.Context, fields any, into string) error {
	var claims []string
	pairs, _ := fields.([]any)
	for i := 0; i+1 < len(pairs); i += 2 {
		if f, _ := pairs[i].(string); strings.HasPrefix(f, "c:") {
			v, _ := pairs[i+1].(string)
			claims = append(claims, f, v)
		}
	}
	if len(claims) == 0 {
		return nil
	}
	_, err := mergeClaimsScript.Run(ctx, s.rc, []string{personHashKey(into)}, claims...)
	return err
}

// setJoinedScript records that the user joined its person whole, if that
// is still its person and it is not erased.
var setJoinedScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'person') == ARGV[1] then redis.call('HSET', KEYS[1], 'joined', ARGV[1]) end
return 1
`)

// Get returns user id's record.
func (s *Store) Get(ctx context.Context, id int64) (account.User, bool, error) {
	u, _, ok, err := s.record(ctx, id)
	return u, ok, err
}

// record reads user id's hash: the record, and the user's person.
func (s *Store) record(ctx context.Context, id int64) (account.User, string, bool, error) {
	u, hash, ok, err := s.userHash(ctx, id)
	return u, hashField(hash, "person"), ok, err
}

// userHash reads user id's hash (HGETALL): the record it holds, and the
// hash's fields for what else it keeps; false when there is no record.
func (s *Store) userHash(ctx context.Context, id int64) (account.User, any, bool, error) {
	reply, err := s.rc.Do(ctx, "HGETALL", userKey(id))
	if err != nil {
		return account.User{}, nil, false, unavailable(err)
	}
	if pairs, _ := reply.([]any); !slices.Contains(pairs, any("appid")) {
		return account.User{}, nil, false, nil
	}
	u, err := readRecord(reply)
	if err != nil {
		return account.User{}, nil, false, unavailable(err)
	}
	return u, reply, true, nil
}

// updateScript sets the fields given (deleting those given empty) if the
// record is still at the version read, and answers {1, the record's
// fields}; {0} when another write came first, {-1} when there is no record.
// With events (KEYS[2] the user's outbox; the fields then from ARGV[6])
// it pushes there, with the change, a phone.bound (ARGV[3]) and a
// person.joined (ARGV[4], ARGV[5] around the person id the user had) when
// given, and answers third how many it pushed (redisevents.go).
var updateScript = redis.NewScript(eventsLua + leaveLua + `
local k = KEYS[1]
if redis.call('HEXISTS', k, 'appid') == 0 then return {-1} end
if redis.call('HGET', k, 'v') ~= ARGV[1] then return {0} end
local first, pushed = 3, 0
if KEYS[2] then
  first = 6
  if ARGV[4] ~= '' then
    pushed = redis.call('RPUSH', KEYS[2], ARGV[4] .. (person_id(k) or redis.call('HGET', k, 'id')) .. ARGV[5])
  end
  if ARGV[3] ~= '' then pushed = redis.call('RPUSH', KEYS[2], ARGV[3]) end
end
for i = first, #ARGV, 2 do
  if ARGV[i] == 'person' and ARGV[i+1] ~= '' then leave(k, ARGV[i+1]) end
  if ARGV[i+1] == '' then redis.call('HDEL', k, ARGV[i]) else redis.call('HSET', k, ARGV[i], ARGV[i+1]) end
end
redis.call('HSET', k, 'updated_at', ARGV[2])
redis.call('HINCRBY', k, 'v', 1)
if KEYS[2] then return {1, redis.call('HGETALL', k), pushed} end
return {1, redis.call('HGETALL', k)}
`)

// Update applies change to user id's record and stores the fields it
// changed, if no other write changed the record meanwhile; otherwise it
// reads the record again and applies change to that, as the file store's
// lock would have had it. A change that changes nothing writes nothing.
func (s *Store) Update(ctx context.Context, id int64, change func(u *account.User)) (account.User, error) {
	if err := s.writable(); err != nil {
		return account.User{}, err
	}
	for range 32 {
		old, reply, ok, err := s.userHash(ctx, id)
		if err != nil {
			return account.User{}, err
		}
		if !ok {
			return account.User{}, fmt.Errorf("update: %w %d", account.ErrNoUser, id)
		}
		u := old
		change(&u)
		u.ID, u.AppID, u.OpenID, u.CreatedAt, u.UpdatedAt, u.LastLoginAt = old.ID, old.AppID, old.OpenID, old.CreatedAt, old.UpdatedAt, old.LastLoginAt
		if u == old {
			return u, nil
		}
		keys := []string{userKey(id)}
		args := []string{hashField(reply, "v"), formatTime(s.stamp(time.Second))}
		if s.events {
			keys = append(keys, userOutboxKey(id))
			args = append(args, s.updateEvents(&old, &u)...)
		}
		was, now := fieldsOf(&old), fieldsOf(&u)
		for i := 0; i < len(now); i += 2 {
			if now[i+1] != was[i+1] {
				args = append(args, now[i], now[i+1])
			}
		}
		// A unionid learned from verified user info moves the user into
		// the person it names, as a login that brings one does; a changed
		// one keeps the person (linkUnionID), as does a first one of a user
		// back through an alias, which holds its person's unionids.
		if old.UnionID == "" && old.PreviousUnionIDs == "" && u.UnionID != "" {
			args = append(args, "person", s.PersonHash(u.AppID, u.OpenID, u.UnionID))
		}
		res, err := updateScript.Run(ctx, s.rc, keys, args...)
		if err != nil {
			return account.User{}, unavailable(err)
		}
		r, _ := res.([]any)
		switch {
		case len(r) == 2 || len(r) == 3:
			stored, err := readRecord(r[1])
			if err == nil {
				err = s.settlePerson(ctx, stored, r[1])
			}
			if err == nil && len(r) == 3 && r[2] != int64(0) && old.UnionID == "" && u.UnionID != "" {
				err = s.pinJoins(ctx, id) // the person.joined it pushed (updateEvents)
			}
			if len(r) == 3 && r[2] != int64(0) {
				s.note(keys[1]) // pushed, and durable: to relay even if the update fails now
			}
			if err != nil {
				return account.User{}, unavailable(err)
			}
			return stored, nil
		case len(r) == 1 && r[0] == int64(-1):
			return account.User{}, fmt.Errorf("update: %w %d", account.ErrNoUser, id)
		}
	}
	return account.User{}, unavailable(fmt.Errorf("update of user %d: the record kept changing", id))
}

// Person returns user id's record and its person's records, from the
// user's hash alone (one read): the hash keeps a copy of the person's list,
// which each change of the person spreads (spreadMembers). A hash without
// one (a spread cut short) is read from the person itself.
func (s *Store) Person(ctx context.Context, id int64) (account.User, []account.Member, bool, error) {
	u, reply, ok, err := s.userHash(ctx, id)
	if err != nil || !ok {
		return account.User{}, nil, ok, err
	}
	if members, ok := copiedMembers(u, reply); ok {
		return u, members, true, nil
	}
	person, err := s.rc.Do(ctx, "HGETALL", personHashKey(hashField(reply, "person")))
	if err != nil {
		return account.User{}, nil, false, unavailable(err)
	}
	members := membersIn(person)
	if !slices.Contains(members, account.Member{ID: u.ID, AppID: u.AppID}) {
		members = append(members, account.Member{ID: u.ID, AppID: u.AppID})
		slices.SortFunc(members, func(a, b account.Member) int { return cmp.Compare(a.ID, b.ID) })
	}
	return u, members, true, nil
}

// copiedMembers is the copy of its person's list that user u's hash
// (reply) holds, if it holds a good one: "m" is "<person's tag>@<version>|
// <list>", and only a list of the user's own person, naming the user,
// counts.
func copiedMembers(u account.User, reply any) ([]account.Member, bool) {
	copyOf, list, _ := strings.Cut(hashField(reply, "m"), "|")
	copyOf, _, _ = strings.Cut(copyOf, "@")
	members := parseMembers(list)
	if copyOf != personTag(hashField(reply, "person")) || !slices.Contains(members, account.Member{ID: u.ID, AppID: u.AppID}) {
		return nil, false
	}
	return members, true
}

// membersIn reads the records of a person's hash, ascending.
func membersIn(reply any) []account.Member {
	var members []account.Member
	pairs, _ := reply.([]any)
	for i := 0; i+1 < len(pairs); i += 2 {
		f, _ := pairs[i].(string)
		idText, isMember := strings.CutPrefix(f, "u:")
		id, err := strconv.ParseInt(idText, 10, 64)
		if isMember && err == nil {
			appID, _ := pairs[i+1].(string)
			members = append(members, account.Member{ID: id, AppID: appID})
		}
	}
	slices.SortFunc(members, func(a, b account.Member) int { return cmp.Compare(a.ID, b.ID) })
	return members
}

// formatRedisMembers is a person's list as a user's hash keeps it:
// "<id>:<appid>,…".
func formatMembers(members []account.Member) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = strconv.FormatInt(m.ID, 10) + ":" + m.AppID
	}
	return strings.Join(parts, ",")
}

func parseMembers(list string) []account.Member {
	var members []account.Member
	for part := range strings.SplitSeq(list, ",") {
		idText, appID, ok := strings.Cut(part, ":")
		id, err := strconv.ParseInt(idText, 10, 64)
		if ok && err == nil {
			members = append(members, account.Member{ID: id, AppID: appID})
		}
	}
	return members
}

// changePersonLua is change_person(k, op, member, appid) for the scripts
// below: it adds a record to the person's hash k (op "add", the member
// and its appid) or takes one out ("del" and the member), or neither (op
// nil), counts the change, and answers the person's version with its
// hash, read at once; or {-1, the person} for the alias of another
// (redislink.go), changing nothing.
const changePersonLua = `
local function change_person(k, op, member, appid)
  local alias = redis.call('HGET', k, 'alias')
  if alias then return {-1, alias} end
  if op == 'add' then redis.call('HSET', k, member, appid) end
  if op == 'del' then redis.call('HDEL', k, member) end
  local v = redis.call('HINCRBY', k, 'ver', 1)
  return {v, redis.call('HGETALL', k)}
end
`

// setMembersLua is set_members(k, person, tag, ver, list, joined) for the
// scripts below: it gives the user's hash k person's list of version ver,
// unless the user is no longer of that person, or holds a newer list of
// it, and with joined "joined" records that the user joined the person
// whole; it answers -1 when the user is gone (erased). The list is marked
// with the person's tag, not its whole hash, so that a person of one app
// or two stays under 64 bytes, which Redis keeps a small hash compact for
// (hash-max-listpack-value).
const setMembersLua = `
local function set_members(k, person, tag, ver, list, joined)
  if redis.call('HEXISTS', k, 'appid') == 0 then return -1 end
  if redis.call('HGET', k, 'person') ~= person then return 0 end
  if joined == 'joined' then redis.call('HSET', k, 'joined', person) end
  local m = redis.call('HGET', k, 'm')
  if m then
    local of, had = string.match(m, '^(%x+)@(%d+)|')
    if of == tag and tonumber(had) >= tonumber(ver) then return 0 end
  end
  redis.call('HSET', k, 'm', tag .. '@' .. ver .. '|' .. list)
  return 1
end
`

// changePersonScript is change_person on the person's hash KEYS[1], with
// ARGV its op, member and appid.
var changePersonScript = redis.NewScript(changePersonLua + `
return change_person(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
`)

// setMembersScript is set_members on the user's hash KEYS[1], with ARGV
// the rest of its arguments.
var setMembersScript = redis.NewScript(setMembersLua + `
return set_members(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
`)

// changeAloneScript is change_person on the person's hash KEYS[1] (ARGV
// from the fourth), and then, if the joiner (its hash KEYS[2], its member
// ARGV[3]) is the person's only record, set_members of the list of it
// alone, with the join, on its hash (person ARGV[1], tag ARGV[2]): it
// answers as change_person, with set_members's answer third when it gave
// the joiner its copy. One server only: a Cluster has the two hashes in
// different slots (crossSlot).
var changeAloneScript = redis.NewScript(changePersonLua + setMembersLua + `
local r = change_person(KEYS[1], ARGV[4], ARGV[5], ARGV[6])
if r[1] == -1 then return r end
local appid, others = nil, false
for i = 1, #r[2], 2 do
  if string.sub(r[2][i], 1, 2) == 'u:' then
    if r[2][i] == ARGV[3] then appid = r[2][i + 1] else others = true end
  end
end
if appid and not others then
  r[3] = set_members(KEYS[2], ARGV[1], ARGV[2], string.format('%d', r[1]), string.sub(ARGV[3], 3) .. ':' .. appid, 'joined')
end
return r
`)

// personTag is the start of a person's hash that marks a copy of its list.
func personTag(person string) string { return person[:min(len(person), 16)] }

// spreadMembers makes change to person (change_person's op, member and
// appid, or none) and gives each of its records the person's list: of
// concurrent changes, the version read last, which saw them all, is the
// one that stays. The copy given to user joiner (0 for none) also records
// that it joined the person whole. On one server (crossSlot), a joiner
// alone in the person is given its copy by the script that makes the
// change (changeAloneScript), in the same round trip: a new user's person.
func (s *Store) spreadMembers(ctx context.Context, person string, joiner int64, change ...string) error {
	script, keys, args := changePersonScript, []string{personHashKey(person)}, change
	if joiner != 0 && s.crossSlot {
		script, keys = changeAloneScript, append(keys, userKey(joiner))
		args = append([]string{person, personTag(person), "u:" + strconv.FormatInt(joiner, 10)}, change...)
	}
	reply, err := script.Run(ctx, s.rc, keys, args...)
	if err != nil {
		return err
	}
	r, _ := reply.([]any)
	if len(r) != 2 && len(r) != 3 {
		return fmt.Errorf("person version script answered %v", reply)
	}
	ver, _ := r[0].(int64)
	if ver == -1 {
		into, _ := r[1].(string)
		return &aliasError{of: person, into: into}
	}
	var gone []string
	switch {
	case len(r) == 3 && r[2] == int64(-1):
		gone = []string{"u:" + strconv.FormatInt(joiner, 10)}
	case len(r) == 2:
		if gone, err = s.giveCopies(ctx, person, ver, membersIn(r[1]), joiner); err != nil {
			return err
		}
	}
	for i, member := range gone {
		// Erased, and left in the person by an erasure cut short: taken
		// out now, and the list spread again without them; the last
		// spread records the join.
		last := int64(0)
		if i == len(gone)-1 {
			last = joiner
		}
		if err := s.spreadMembers(ctx, person, last, "del", member); err != nil {
			return err
		}
	}
	return nil
}

// giveCopies gives each of members the list of them, person's of version
// ver, and answers those gone (erased). The joiner's copy goes last, and
// records the join only once every other copy is given: the mark says the
// whole change is done, and a change cut short before it is made again at
// the next login.
func (s *Store) giveCopies(ctx context.Context, person string, ver int64, members []account.Member, joiner int64) (gone []string, err error) {
	list := formatMembers(members)
	order := slices.Clone(members)
	if i := slices.IndexFunc(order, func(m account.Member) bool { return m.ID == joiner }); i >= 0 {
		order = append(slices.Delete(order, i, i+1), members[i])
	}
	for _, m := range order {
		joined := ""
		if m.ID == joiner && len(gone) == 0 {
			joined = "joined"
		}
		set, err := setMembersScript.Run(ctx, s.rc, []string{userKey(m.ID)}, person, personTag(person), strconv.FormatInt(ver, 10), list, joined)
		if err != nil {
			return nil, err
		}
		if set == int64(-1) {
			gone = append(gone, "u:"+strconv.FormatInt(m.ID, 10))
		}
	}
	return gone, nil
}

// A claim is stored as "<Unix ms> <user id> <appid>", so that the earliest
// of two is found by its first number alone.
func formatClaim(c account.Claim) string {
	return strconv.FormatInt(c.ClaimedAt.UnixMilli(), 10) + " " + strconv.FormatInt(c.UserID, 10) + " " + c.AppID
}

func parseClaim(name, v string) (account.Claim, error) {
	parts := strings.SplitN(v, " ", 3)
	if len(parts) == 3 {
		ms, err1 := strconv.ParseInt(parts[0], 10, 64)
		id, err2 := strconv.ParseInt(parts[1], 10, 64)
		if err1 == nil && err2 == nil {
			return account.Claim{Name: name, AppID: parts[2], UserID: id, ClaimedAt: time.UnixMilli(ms).UTC()}, nil
		}
	}
	return account.Claim{}, fmt.Errorf("claim %q is stored as %q", name, v)
}

// Claim claims name for user id's person: HSETNX on the person's hash,
// which one of any number of concurrent claims, from any instance and any
// of the person's apps, wins. A user whose join to its person was cut
// short (the login or update that moved it did not finish) is joined
// first, as its next login would: the claims of the person it left are
// then in its person's, and a gift taken there is not taken again.
func (s *Store) Claim(ctx context.Context, id int64, name string) (account.Claim, bool, error) {
	if err := s.writable(); err != nil {
		return account.Claim{}, false, err
	}
	who, person, err := s.settled(ctx, id)
	if err != nil {
		return account.Claim{}, false, err
	}
	appID := who.AppID
	c := account.Claim{Name: name, AppID: appID, UserID: id, ClaimedAt: s.stamp(time.Millisecond)}
	var event []string // claim.taken, around its person id, with the claimant's id
	if s.events {
		claimed := events.Claimed(c.ClaimedAt, &account.User{ID: id, AppID: appID}, 0, name)
		event = append(aroundPerson(&claimed), strconv.FormatInt(id, 10))
	}
	for range maxAliasHops {
		keys := []string{personHashKey(person)}
		if s.events {
			keys = append(keys, personOutboxKey(person))
		}
		reply, err := claimScript.Run(ctx, s.rc, keys, append([]string{"c:" + name, formatClaim(c)}, event...)...)
		if err != nil {
			return account.Claim{}, false, unavailable(err)
		}
		r, _ := reply.([]any)
		if len(r) != 2 {
			return account.Claim{}, false, unavailable(fmt.Errorf("the claim script answered %v", reply))
		}
		if r[0] == int64(1) && s.events {
			// The claimant's own outbox is moved first, even if another
			// instance pushed onto it (and was killed before it moved it):
			// a user's claim.taken never reaches the log before the user's
			// user.created and other events made before it.
			s.note(userOutboxKey(id), keys[1])
		}
		if r[0] == int64(-1) {
			// The person was merged into another (redislink.go), whose
			// claims count: the user is sent on, and claims there.
			into, _ := r[1].(string)
			if _, err := movePersonScript.Run(ctx, s.rc, []string{userKey(id)}, person, into); err != nil {
				return account.Claim{}, false, unavailable(err)
			}
			person = into
			continue
		}
		if r[0] == int64(1) {
			return c, false, nil
		}
		stored, _ := r[1].(string)
		earlier, err := parseClaim(name, stored)
		if err != nil {
			return account.Claim{}, false, unavailable(err)
		}
		return earlier, true, nil
	}
	return account.Claim{}, false, unavailable(fmt.Errorf("claim: more than %d aliases from person %s", maxAliasHops, person))
}

// settled is user id (its id, appid, openid and unionid) and its person,
// once what a login or update cut short left of its person is finished,
// as the user's next login would finish it: its join, as the user, so
// that one back through an erased user's alias takes its person's
// unionids with it (joinPersonFollowing), and the claims kept under its
// app's and openid's hash, which a new user with a unionid takes, joining
// its erased user's person again where that person has records
// (takeOwnClaims); and the link of a unionid that changed
// (linkUnionID), which brings a person that had it into the user's. A
// claim finishes them before it claims, and the relay before it names the
// user's person in an event (personNow).
func (s *Store) settled(ctx context.Context, id int64) (account.User, string, error) {
	who, person, joined, own, linked, err := s.claimant(ctx, id)
	if err != nil {
		return account.User{}, "", err
	}
	if joined != person {
		if err := s.joinPersonFollowing(ctx, who, joined, person); err != nil {
			return account.User{}, "", unavailable(err)
		}
	}
	if own != "" {
		if err := s.takeOwnClaims(ctx, id, own); err != nil {
			return account.User{}, "", unavailable(err)
		}
	}
	if joined != person || own != "" {
		if who, person, _, _, linked, err = s.claimant(ctx, id); err != nil { // moved meanwhile
			return account.User{}, "", err
		}
	}
	if who.PreviousUnionIDs != "" && who.UnionID != "" && linked != who.UnionID {
		// Not linked yet, a person that had the new unionid would take
		// the claim again (TestRedisARejoinCutShortAfterItsMoveIsFinished).
		if err := s.linkUnionID(ctx, who); err != nil {
			return account.User{}, "", unavailable(err)
		}
		who, person, _, _, _, err = s.claimant(ctx, id)
	}
	return who, person, err
}

// claimant is user id (its id, appid, openid, unionid and previous
// unionids), its person, the person it last joined whole ("" for none),
// the hash whose kept claims it is still to take (takeOwnClaims; "" for
// none), and the unionid it linked last (linkUnionID).
func (s *Store) claimant(ctx context.Context, id int64) (who account.User, person, joined, own, linked string, err error) {
	reply, err := s.rc.Do(ctx, "HMGET", userKey(id), "appid", "person", "joined", "own", "openid", "unionid", "previous_unionids", "linked")
	if err != nil {
		return account.User{}, "", "", "", "", unavailable(err)
	}
	fields, _ := reply.([]any)
	if len(fields) != 8 || fields[0] == nil || fields[1] == nil {
		return account.User{}, "", "", "", "", fmt.Errorf("claim: %w %d", account.ErrNoUser, id)
	}
	joined, _ = fields[2].(string)
	own, _ = fields[3].(string)
	who = account.User{ID: id, AppID: fields[0].(string)}
	who.OpenID, _ = fields[4].(string)
	who.UnionID, _ = fields[5].(string)
	who.PreviousUnionIDs, _ = fields[6].(string)
	linked, _ = fields[7].(string)
	return who, fields[1].(string), joined, own, linked, nil
}

// claimScript claims ARGV[1] for a person with ARGV[2], unless it has a
// claim of that name, and answers {1 if it was made, the claim that
// counts}; or {-1, the person} for the alias of another, claiming nothing.
// With events, a claim it makes pushes claim.taken (ARGV[3], ARGV[4]
// around the person id: its earliest record's, the claimant ARGV[5] among
// them) onto the person's outbox (KEYS[2]).
var claimScript = redis.NewScript(`
local alias = redis.call('HGET', KEYS[1], 'alias')
if alias then return {-1, alias} end
local made = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local claim = redis.call('HGET', KEYS[1], ARGV[1])
if made == 0 or not KEYS[2] then return {made, claim} end
local person = ARGV[5]
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local id = string.match(f, '^u:(%d+)$')
  if id and tonumber(id) < tonumber(person) then person = id end
end
redis.call('RPUSH', KEYS[2], ARGV[3] .. person .. ARGV[4])
return {made, claim}
`)

// ClaimsOf lists user id's person's claims in the order they were made.
func (s *Store) ClaimsOf(ctx context.Context, id int64) ([]account.Claim, error) {
	reply, err := s.rc.Do(ctx, "HGET", userKey(id), "person")
	if err != nil {
		return nil, unavailable(err)
	}
	person, ok := reply.(string)
	if !ok {
		return nil, nil
	}
	for range maxAliasHops {
		if reply, err = s.rc.Do(ctx, "HGETALL", personHashKey(person)); err != nil {
			return nil, unavailable(err)
		}
		into := hashField(reply, "alias")
		if into == "" {
			return claimsIn(reply)
		}
		person = into // merged into another (redislink.go), whose claims count
	}
	return nil, unavailable(fmt.Errorf("claims: more than %d aliases from person %s", maxAliasHops, person))
}

// claimsIn reads the claims of a person's hash, oldest first.
func claimsIn(reply any) ([]account.Claim, error) {
	list := []account.Claim{}
	pairs, _ := reply.([]any)
	for i := 0; i+1 < len(pairs); i += 2 {
		f, _ := pairs[i].(string)
		if name, isClaim := strings.CutPrefix(f, "c:"); isClaim {
			v, _ := pairs[i+1].(string)
			c, err := parseClaim(name, v)
			if err != nil {
				return nil, unavailable(err)
			}
			list = append(list, c)
		}
	}
	slices.SortStableFunc(list, func(a, b account.Claim) int {
		return cmp.Or(a.ClaimedAt.Compare(b.ClaimedAt), strings.Compare(a.Name, b.Name))
	})
	return list, nil
}

// eraseScript replaces the user's hash (KEYS[1]) with a tombstone, which a
// login that found the id a moment before sees, rather than a record to
// create, and ends every token of the user with its session keys
// (revokeLua, ARGV[2] to ARGV[4]; KEYS[3] the set of its tokens, KEYS[2]
// :sk, and the token keys from KEYS[ARGV[9]] as read from the set) in the
// same step, so that no token outlives its user's erasure. Until the steps
// after it are done (finishErasure), the tombstone keeps what they need:
// the user's app (ARGV[5]), openid (ARGV[6]), which its openid's key names
// as long as it is not taken away, and person (ARGV[7]). With events, it
// pushes user.deleted (ARGV[10]) onto the user's outbox (KEYS[4]), which
// the tombstone leaves. It answers how many tokens were alive, -1 when
// there is no record to erase, or -2, erasing nothing, when the record is
// no longer at the version (ARGV[8]) and person read, or a token was issued
// since the set was read: what the erasure made of them (the alias of the
// user's app and openid, the person it takes the user out of, the claims
// it answers kept, the tokens it ends) is to be made again.
var eraseScript = redis.NewScript(revokeLua + `
local f = redis.call('HMGET', KEYS[1], 'appid', 'v', 'person')
if not f[1] then return -1 end
if (f[2] or '') ~= ARGV[8] or (f[3] or '') ~= ARGV[7] then return -2 end
local first = tonumber(ARGV[9])
if unlisted(KEYS[1], KEYS[3], first) then return -2 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'erased', ARGV[1], 'left_appid', ARGV[5], 'left_openid', ARGV[6], 'left_person', ARGV[7])
if ARGV[10] then redis.call('RPUSH', KEYS[4], ARGV[10]) end
return revoke(KEYS[3], KEYS[2], first, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
`)

// The fields of an erased user's tombstone that say its erasure is not
// finished yet, and what finishErasure needs to finish it.
var leftFields = []string{"left_appid", "left_openid", "left_person"}

// Erase deletes user id: the record, the session keys and tokens with it,
// the key from its openid, and its place in its person. Its claims stay,
// under the person's keyed hash, so that a returning person does not take
// them twice. Redis keeps the erased fields in its AOF until it next
// rewrites it (docs/redis.md).
func (s *Store) Erase(ctx context.Context, id int64) (account.Erasure, error) {
	gone, _, err := s.EraseWithTokens(ctx, id)
	return gone, err
}

// EraseWithTokens is Erase, and reports how many of the user's tokens it
// ended alive: the tokens end in the same script as the record
// (eraseScript). That script is the erasure: once it has run, the erasure
// is made and answered as made, whatever happens after it. The steps
// after it (the openid's key, the person, the phone numbers in the log of
// events, each in a slot of its own) are tried at once; one that fails is
// logged and finished later by FinishErasures, of this instance or any
// other, as the id is in wx:erasing from before the erasure until they are
// done; a login of the same openid, a change of the person and the relay
// of the user.deleted also do their part before that. An erasure is never
// made twice: the token that asked for it is dead, and a second call finds
// no record.
func (s *Store) EraseWithTokens(ctx context.Context, id int64) (account.Erasure, int, error) {
	if err := s.writable(); err != nil {
		return account.Erasure{}, 0, err
	}
	for range maxEraseTries {
		result, revoked, u, person, err := s.tombstone(ctx, id)
		if errors.Is(err, errChangedMeanwhile) {
			continue
		}
		if err != nil {
			return account.Erasure{}, 0, err
		}
		if s.events {
			s.note(userOutboxKey(id))
		}
		s.ids.forget(u.Ref())
		if err := s.finishErasure(ctx, id, u.AppID, u.OpenID, person); err != nil {
			// Made all the same: its user's record and tokens are gone. Listed
			// again, in case another instance took it off meanwhile, having
			// found the record whole (FinishErasures): if Redis is reachable,
			// the erasure is not left unfinished for good.
			s.relist(ctx, id)
			s.log.Warn("user erased; the erasure's last steps are left to finish", "user_id", id, "err", err)
			select {
			case s.erasing <- struct{}{}:
			default:
			}
		}
		return result, revoked, nil
	}
	return account.Erasure{}, 0, unavailable(fmt.Errorf("erase of user %d: the record kept changing", id))
}

// maxEraseTries bounds the times one erasure reads its user again, which
// changed between the read and the tombstone.
const maxEraseTries = 8

// errChangedMeanwhile is a tombstone not made: the user's record changed
// since it was read, a token was issued since its set was read, or its
// join was finished first.
var errChangedMeanwhile = errors.New("the record changed meanwhile")

// tombstone makes user id's erasure (eraseScript) from the record as it
// reads it, and answers what it kept, how many tokens it ended, the user
// and its person; errChangedMeanwhile when the record changed between
// the read and the script (a unionid learned, a move to another person, a
// token issued), which leaves it as it is, or when it finished a join cut
// short first: the record is to be read again.
func (s *Store) tombstone(ctx context.Context, id int64) (account.Erasure, int, account.User, string, error) {
	fail := func(err error) (account.Erasure, int, account.User, string, error) {
		return account.Erasure{}, 0, account.User{}, "", err
	}
	u, hash, ok, err := s.userHash(ctx, id)
	if err != nil {
		return fail(err)
	}
	if !ok {
		return fail(fmt.Errorf("erase: %w %d", account.ErrNoUser, id))
	}
	person := hashField(hash, "person")
	if joined := hashField(hash, "joined"); joined != person {
		// A join cut short (a login's, after its script) is finished
		// first, as the user's next login or claim would: the erasure then
		// takes the user out of the person it is a record of, aliases its
		// app and openid to it, and the claims the join brings along count
		// there.
		if err := s.joinPersonFollowing(ctx, u, joined, person); err != nil {
			return fail(unavailable(err))
		}
		return fail(errChangedMeanwhile)
	}
	claims, err := s.rc.Do(ctx, "HGETALL", personHashKey(person))
	if err != nil {
		return fail(unavailable(err))
	}
	list, err := claimsIn(claims)
	if err != nil {
		return fail(err)
	}
	result := account.Erasure{UserID: id, ClaimsKept: []string{}}
	for _, c := range list {
		if c.UserID == id {
			result.ClaimsKept = append(result.ClaimsKept, c.Name)
		}
	}
	// The same user back in its app without its unionid (the app no longer
	// on an Open Platform account) is the person still, and finds its
	// claims: its app's and openid's hash is made an alias of the person
	// (aliasErased), before the erasure, so that no crash leaves the
	// claims unfound.
	if own := s.PersonHash(u.AppID, u.OpenID, ""); u.UnionID != "" && own != person {
		if err := s.aliasErased(ctx, own, person, id, claims); err != nil {
			return fail(unavailable(err))
		}
	}
	// Listed before it is made, so that an erasure cut short after it is
	// found and finished (FinishErasures).
	if _, err := s.rc.Do(ctx, "ZADD", erasingKey, strconv.FormatInt(s.now().UnixMilli(), 10), strconv.FormatInt(id, 10)); err != nil {
		return fail(unavailable(err))
	}
	keys := []string{userKey(id), sessionKeyKey(id), tokenSetKey(id)}
	var event []string
	if s.events {
		e := events.Deleted(s.now(), id, u.AppID, personIDOf(u, hash, claims))
		keys, event = append(keys, userOutboxKey(id)), []string{string(e.Append(nil))}
	}
	// The tokens are read last, so that one issued meanwhile is the rarer.
	tokens, _, err := s.tokenKeys(ctx, id)
	if err != nil {
		return fail(unavailable(err))
	}
	if s.beforeTombstone != nil {
		s.beforeTombstone()
	}
	args := append([]string{formatTime(s.stamp(time.Second))}, s.lifetimeArgs()...)
	args = append(args, u.AppID, u.OpenID, person, hashField(hash, "v"), strconv.Itoa(len(keys)+1))
	keys, args = append(keys, tokens...), append(args, event...)
	reply, err := eraseScript.Run(ctx, s.rc, keys, args...)
	if err != nil {
		return fail(unavailable(err))
	}
	switch revoked, _ := reply.(int64); revoked {
	case -1:
		return fail(fmt.Errorf("erase: %w %d", account.ErrNoUser, id))
	case -2:
		return fail(errChangedMeanwhile)
	default:
		return result, int(revoked), u, person, nil
	}
}

// erasingKey lists the erasures whose steps after the tombstone may not be
// done: user id → when its erasure began (Unix ms), in a sorted set.
const erasingKey = "wx:erasing"

// finishErasure takes an erased user out of what still names it: the key
// of its openid, its person, and the log of events (its phone numbers);
// then the tombstone forgets what it kept for this, and wx:erasing the
// erasure. Each step may be made again: an erasure cut short is finished
// by doing them all.
func (s *Store) finishErasure(ctx context.Context, id int64, appID, openID, person string) error {
	if err := s.eraseFault("openid"); err != nil {
		return err
	}
	if err := s.forgetOpenID(ctx, appID, openID, id); err != nil {
		return fmt.Errorf("forget the openid: %w", err)
	}
	// A person that became an alias of another since holds no records: a
	// user whose hash still names it never joined it (its first join cut
	// short), and has nothing to be taken out of.
	var merged *aliasError
	if err := s.eraseFault("person"); err != nil {
		return err
	}
	if person != "" {
		if err := s.spreadMembers(ctx, person, 0, "del", "u:"+strconv.FormatInt(id, 10)); err != nil && !errors.As(err, &merged) {
			return fmt.Errorf("leave the person: %w", err)
		}
	}
	// Its phone numbers leave the log, whose events of the user's other
	// changes hold only ids: also when this instance records no events.
	// In the log's slot (on a Cluster, another master's). With events, the
	// user.deleted the erasure pushed does it too as the relay moves it.
	if err := s.eraseFault("phones"); err != nil {
		return err
	}
	if err := s.forgetPhones(ctx, id); err != nil {
		return fmt.Errorf("forget the phones: %w", err)
	}
	if _, err := s.rc.Do(ctx, append([]string{"HDEL", userKey(id)}, leftFields...)...); err != nil {
		return err
	}
	_, err := s.rc.Do(ctx, "ZREM", erasingKey, strconv.FormatInt(id, 10))
	return err
}

// eraseFault is the failure a test sets for step of finishErasure, or nil.
func (s *Store) eraseFault(step string) error {
	if s.failErase == nil {
		return nil
	}
	return s.failErase(step)
}

// maxErasuresAtOnce bounds the erasures one FinishErasures reads.
const maxErasuresAtOnce = 100

// erasureGrace is how long an id stays in wx:erasing with its record
// whole: an erasure under way is between the two for a round trip; one
// that failed before its tombstone (its caller told so) is dropped after.
const erasureGrace = time.Minute

// dropErasingScript takes id ARGV[1] out of wx:erasing if it is still
// listed since ARGV[2], not by an erasure begun again since.
var dropErasingScript = redis.NewScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
`)

// FinishErasures finishes the erasures listed in wx:erasing (finishErasure),
// whichever instance made them and however they were cut short: Redis
// lost a moment, a master away, the instance killed. It reads at most
// maxErasuresAtOnce, the oldest first, and answers the failures of those
// it could not finish, which stay listed for the next call, behind the
// others (relist).
func (s *Store) FinishErasures(ctx context.Context) error {
	if err := s.writable(); err != nil {
		return err
	}
	reply, err := s.rc.Do(ctx, "ZRANGE", erasingKey, "0", strconv.Itoa(maxErasuresAtOnce-1), "WITHSCORES")
	if err != nil {
		return unavailable(err)
	}
	listed, _ := reply.([]any)
	var failed error
	for i := 0; i+1 < len(listed); i += 2 {
		idText, _ := listed[i].(string)
		since, _ := listed[i+1].(string)
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil {
			continue // not an id: not wxlogin's
		}
		f, err := s.rc.Do(ctx, "HMGET", userKey(id), "appid", "left_appid", "left_openid", "left_person")
		if err != nil {
			failed = errors.Join(failed, err)
			continue
		}
		fields, _ := f.([]any)
		field := func(i int) string { v, _ := fields[i].(string); return v }
		if len(fields) != 4 {
			continue
		}
		switch {
		case field(0) != "":
			// A record: its erasure failed before it was made, or is under way.
			if at, _ := strconv.ParseFloat(since, 64); s.now().Sub(time.UnixMilli(int64(at))) < erasureGrace {
				continue
			}
			_, err = dropErasingScript.Run(ctx, s.rc, []string{erasingKey}, idText, since)
		case field(1) != "":
			if err = s.finishErasure(ctx, id, field(1), field(2), field(3)); err != nil {
				s.relist(ctx, id) // behind the others, so that those it fails never hold them up
			}
		default:
			_, err = s.rc.Do(ctx, "ZREM", erasingKey, idText) // finished, all but this
		}
		if err != nil {
			failed = errors.Join(failed, fmt.Errorf("user %d: %w", id, err))
		}
	}
	return unavailable(failed)
}

// relist lists erasure id in wx:erasing again, as begun now: behind the
// others, which FinishErasures reads oldest first. At worst an erasure
// finished meanwhile is listed, and taken off at the next FinishErasures.
func (s *Store) relist(ctx context.Context, id int64) {
	s.rc.Do(ctx, "ZADD", erasingKey, strconv.FormatInt(s.now().UnixMilli(), 10), strconv.FormatInt(id, 10)) // best effort: Redis may be what failed
}

// erasureBeat is how often RunErasures looks for erasures to finish, and
// erasurePause how long after one of this process is cut short.
const (
	erasureBeat  = time.Minute
	erasurePause = 5 * time.Second
)

// RunErasures finishes erasures cut short (FinishErasures): at once, an
// erasurePause after one of this process is, and every erasureBeat, for
// those of other instances, until ctx ends.
func (s *Store) RunErasures(ctx context.Context) {
	beat := time.NewTicker(erasureBeat)
	defer beat.Stop()
	for {
		if err := s.FinishErasures(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("erasures made, their last steps not yet: tried again later", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
		case <-s.erasing:
			pause := time.NewTimer(erasurePause)
			select {
			case <-ctx.Done():
				pause.Stop()
				return
			case <-pause.C:
			}
		}
	}
}

// lifetimeArgs are now (Unix ms) and the tokens' lifetimes (ms), as
// revokeLua takes them.
func (s *Store) lifetimeArgs() []string {
	return []string{strconv.FormatInt(s.now().UnixMilli(), 10), strconv.FormatInt(s.ttl.Milliseconds(), 10),
		strconv.FormatInt(s.maxAge.Milliseconds(), 10)}
}

// Lifetime is how long a fresh token lives if it is not used again.
func (s *Store) Lifetime() time.Duration { return min(s.ttl, s.maxAge) }

// issueLua stores a token for the user (issue(t, set, sk, a), for the
// scripts that issue one), and the session_key as the user's, the one it
// replaces kept as the previous: ARGV from the a-th are the session_key,
// now (Unix ms), the token's lifetime, its hash, and -token-max-age (ms).
// It answers whether the user's set of token hashes is due to be pruned of
// expired ones (pruneTokens): once it has doubled since it was last pruned
// (past 32; the size that calls for the next pruning is the :sk hash's
// "prune"), so that a user who logs in again and again, every token alive,
// costs each login a few commands, not one per token. The pruning is not
// made here, as the keys of the other tokens are not this script's to
// touch (a Cluster's rule: a script touches only the keys it declares). The
// set expires with the :sk hash, -token-max-age after the last token
// given, which no token outlives.
const issueLua = `
local function issue(t, set, sk, a)
  local cur = redis.call('HMGET', sk, 'sk', 'prune')
  if cur[1] and cur[1] ~= ARGV[a] then
    redis.call('HSET', sk, 'sk', ARGV[a], 'psk', cur[1], 'psk_at', ARGV[a+1])
  else
    redis.call('HSET', sk, 'sk', ARGV[a])
  end
  redis.call('PEXPIRE', sk, ARGV[a+4])
  redis.call('HSET', t, 'i', ARGV[a+1], 'l', ARGV[a+1])
  redis.call('PEXPIRE', t, ARGV[a+2])
  redis.call('SADD', set, ARGV[a+3])
  redis.call('PEXPIRE', set, ARGV[a+4])
  return redis.call('SCARD', set) > tonumber(cur[2] or '32')
end
`

// issueScript issues a token (issueLua) for the user of hash KEYS[1];
// KEYS are as loginIssueScript's, ARGV issueLua's. It answers 1, 2 when
// the set of the user's tokens is due to be pruned besides, or 0 when the
// user is gone (erased during the login).
var issueScript = redis.NewScript(issueLua + `
if redis.call('HEXISTS', KEYS[1], 'appid') == 0 then return 0 end
if issue(KEYS[4], KEYS[3], KEYS[2], 1) then return 2 end
return 1
`)

// Issue creates a token for who: the user id, then 32 bytes from
// crypto/rand, base64url.
func (s *Store) Issue(ctx context.Context, who account.Identity, key string) (string, error) {
	if err := s.writable(); err != nil {
		return "", err
	}
	token, keys, args := s.newToken(who.UserID, key)
	ok, err := issueScript.Run(ctx, s.rc, keys, args...)
	if err != nil {
		return "", unavailable(err)
	}
	if ok == int64(0) {
		return "", fmt.Errorf("user %d was deleted during the login: %w", who.UserID, account.ErrNoUser)
	}
	if ok == int64(2) {
		s.pruneTokens(ctx, who.UserID)
	}
	return token, nil
}

// pruneScript takes out of the set of a user's token hashes (KEYS[1]) those
// of the token keys KEYS[3] onwards, read from it (tokenKeys), that have
// expired, ARGV being their hashes in the same order; and sets the size
// that calls for the next pruning, twice what is left (at least 32), in
// the :sk hash (KEYS[2]) while there is one: a user erased or revoked
// meanwhile is not given a hash that never expires.
var pruneScript = redis.NewScript(`
local size = redis.call('SCARD', KEYS[1])
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then size = size - redis.call('SREM', KEYS[1], ARGV[i-2]) end
end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'prune', math.max(32, 2 * size)) end
`)

// pruneTokens prunes user id's set of token hashes of the expired ones
// (pruneScript), when an issue says it is due. A token issued meanwhile is
// not looked at: it is alive. It is the best effort of a token already
// issued: a pruning that fails is tried again at the next issue, as the
// set is still past the size that calls for it.
func (s *Store) pruneTokens(ctx context.Context, id int64) {
	keys, hashes, err := s.tokenKeys(ctx, id)
	if err == nil {
		pruneScript.Run(ctx, s.rc, append([]string{tokenSetKey(id), sessionKeyKey(id)}, keys...), hashes...)
	}
}

// newToken is a new token for user id, whose session_key key becomes, with
// the keys and arguments of issueLua that store it.
func (s *Store) newToken(id int64, key string) (token string, keys, args []string) {
	token = strconv.FormatInt(id, 10) + "." + randomText(32, base64.RawURLEncoding.EncodeToString)
	h := account.HashToken(token)
	hash := hex.EncodeToString(h[:])
	keys = []string{userKey(id), sessionKeyKey(id), tokenSetKey(id), tokenKey(id, hash)}
	args = []string{key, strconv.FormatInt(s.now().UnixMilli(), 10), strconv.FormatInt(s.Lifetime().Milliseconds(), 10), hash,
		strconv.FormatInt(s.maxAge.Milliseconds(), 10)}
	return token, keys, args
}

// lookupScript resolves a token at ARGV[1]: nil when it is unknown or has
// expired, else the user's session_key, the previous session_key with when
// it was replaced while that is in its window, and the user's hash, so that
// GET /user needs no second round trip. A use renews the token's idle
// lifetime, written only once ARGV[4] ms have passed since the last write,
// so that most requests write nothing.
var lookupScript = redis.NewScript(`
local t = redis.call('HMGET', KEYS[1], 'i', 'l')
if not t[1] then return false end
local now, ttl, maxage = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local issued, used = tonumber(t[1]), tonumber(t[2])
if now >= math.min(used + ttl, issued + maxage) then
  redis.call('DEL', KEYS[1])
  return false
end
local k = redis.call('HMGET', KEYS[3], 'sk', 'psk', 'psk_at')
if not k[1] or redis.call('HEXISTS', KEYS[2], 'appid') == 0 then return false end
if now - used >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'l', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], string.format('%d', math.min(now + ttl, issued + maxage) - now))
end
if k[3] and now - tonumber(k[3]) > tonumber(ARGV[5]) then k[2] = false; k[3] = false end
return {k[1], k[2], k[3], redis.call('HGETALL', KEYS[2])}
`)

// Lookup resolves a token, and reads its user along: one script on the
// user's slot.
func (s *Store) Lookup(ctx context.Context, token string) (account.Caller, bool, error) {
	idText, _, found := strings.Cut(token, ".")
	id, err := strconv.ParseInt(idText, 10, 64)
	if !found || err != nil || id < 1 || len(token) > 128 {
		return account.Caller{}, false, nil
	}
	h := account.HashToken(token)
	now := s.now()
	reply, err := lookupScript.Run(ctx, s.rc,
		[]string{tokenKey(id, hex.EncodeToString(h[:])), userKey(id), sessionKeyKey(id)},
		strconv.FormatInt(now.UnixMilli(), 10), strconv.FormatInt(s.ttl.Milliseconds(), 10),
		strconv.FormatInt(s.maxAge.Milliseconds(), 10), strconv.FormatInt(touchEvery(s.ttl).Milliseconds(), 10),
		strconv.FormatInt(s.keepPrevious.Milliseconds(), 10))
	if err != nil {
		return account.Caller{}, false, unavailable(err)
	}
	f, _ := reply.([]any)
	if len(f) != 4 {
		return account.Caller{}, false, nil
	}
	str := func(i int) string { v, _ := f[i].(string); return v }
	hash := f[3]
	who := account.Caller{Identity: account.Identity{AppID: hashField(hash, "appid"), OpenID: hashField(hash, "openid"), UserID: id}, SessionKey: str(0), Hash: h}
	if at, err := strconv.ParseInt(str(2), 10, 64); err == nil && str(1) != "" {
		who.PreviousKey, who.ReplacedAt = str(1), time.UnixMilli(at)
	}
	// A hash that does not read whole, or holds no good copy of its
	// person's list, is read again by the route, which says what is wrong
	// or reads the person.
	if u, err := readRecord(hash); err == nil && u.ID == id {
		if members, ok := copiedMembers(u, hash); ok {
			who.Identity = account.Identity{AppID: u.AppID, OpenID: u.OpenID, UserID: id}
			who.ReadWithToken = &account.StoredUser{Record: u, Person: members}
		}
	}
	return who, true, nil
}

// redisTouchEvery is how stale a token's last use may be written: a
// sixty-fourth of its idle lifetime, at most a minute.
func touchEvery(ttl time.Duration) time.Duration { return min(ttl/64, time.Minute) }

// Revoke ends the caller's token.
func (s *Store) Revoke(ctx context.Context, who account.Caller) error {
	if err := s.writable(); err != nil {
		return err
	}
	hash := hex.EncodeToString(who.Hash[:])
	replies, err := s.rc.Pipeline(ctx, [][]string{
		{"DEL", tokenKey(who.UserID, hash)}, {"SREM", tokenSetKey(who.UserID), hash}})
	if err == nil {
		err = firstError(replies)
	}
	return unavailable(err)
}

// revokeLua ends every token of a user: revoke(set, sk, first, now, ttl,
// maxage) deletes the token keys KEYS[first] onwards, the set of the
// user's token hashes and the user's session keys (sk), answering how many
// of the tokens were alive at now (Unix ms) with the lifetimes ttl and
// maxage (ms). A script may touch only the keys it declares (a Cluster's
// rule), and a user's tokens are known only from their set, so the caller
// reads the set first (tokenKeys) and declares what it read; unlisted(u,
// set, first) says that the set holds a token issued since, whose key
// (under u, the user's hash) is not declared: the script then writes
// nothing and the caller reads the set again.
const revokeLua = `
local function unlisted(u, set, first)
  local declared = {}
  for i = first, #KEYS do declared[KEYS[i]] = true end
  for _, h in ipairs(redis.call('SMEMBERS', set)) do
    if not declared[u .. ':t:' .. h] then return true end
  end
  return false
end
local function revoke(set, sk, first, now, ttl, maxage)
  local n = 0
  for i = first, #KEYS do
    local t = redis.call('HMGET', KEYS[i], 'i', 'l')
    if t[1] and now < math.min(tonumber(t[2]) + ttl, tonumber(t[1]) + maxage) then n = n + 1 end
    redis.call('DEL', KEYS[i])
  end
  redis.call('DEL', set, sk)
  return n
end
`

// tokenKeys is the keys of user id's tokens as the set of their hashes
// lists them now, for a script that ends them (revokeLua) or prunes the
// set (pruneScript) to declare; hashes is their hashes, in the same order.
func (s *Store) tokenKeys(ctx context.Context, id int64) (keys, hashes []string, err error) {
	reply, err := s.rc.Do(ctx, "SMEMBERS", tokenSetKey(id))
	if err != nil {
		return nil, nil, err
	}
	members, _ := reply.([]any)
	for _, m := range members {
		h, _ := m.(string)
		keys, hashes = append(keys, tokenKey(id, h)), append(hashes, h)
	}
	return keys, hashes, nil
}

// maxTokenReads bounds the times one call reads a user's set of tokens
// again, a token having been issued between the read and its script.
const maxTokenReads = 8

// revokeUserScript ends every token of the user (revokeLua): KEYS are the
// user's hash, its :tokens, its :sk, then its token keys as read; ARGV
// lifetimeArgs. It answers how many were alive, or -1, ending none, when a
// token was issued since the set was read.
var revokeUserScript = redis.NewScript(revokeLua + `
if unlisted(KEYS[1], KEYS[2], 4) then return -1 end
return revoke(KEYS[2], KEYS[3], 4, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
`)

// RevokeUser ends every token of user id and reports how many were alive.
func (s *Store) RevokeUser(ctx context.Context, id int64) (int, error) {
	if err := s.writable(); err != nil {
		return 0, err
	}
	for range maxTokenReads {
		tokens, _, err := s.tokenKeys(ctx, id)
		if err != nil {
			return 0, unavailable(err)
		}
		keys := append([]string{userKey(id), tokenSetKey(id), sessionKeyKey(id)}, tokens...)
		n, err := revokeUserScript.Run(ctx, s.rc, keys, s.lifetimeArgs()...)
		if err != nil {
			return 0, unavailable(err)
		}
		if count, _ := n.(int64); count >= 0 {
			return int(count), nil
		}
	}
	return 0, unavailable(fmt.Errorf("revoke of user %d: tokens kept being issued", id))
}

// firstRedisError is the first refusal among a pipeline's replies.
func firstError(replies []any) error {
	for _, r := range replies {
		if e, refused := r.(redis.Error); refused {
			return e
		}
	}
	return nil
}

// formatRedisTime is how the user's hash holds a time.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// redisFields is u's fields as the user's hash holds them, in pairs; ""
// for a field that is not set (its hash has no such field).
func fieldsOf(u *account.User) []string {
	gender := ""
	if u.Gender != 0 {
		gender = strconv.Itoa(u.Gender)
	}
	return []string{
		"unionid", u.UnionID, "previous_unionids", u.PreviousUnionIDs, "nickname", u.Nickname, "avatar_url", u.AvatarURL, "gender", gender,
		"language", u.Language, "city", u.City, "province", u.Province, "country", u.Country,
		"phone_number", u.PhoneNumber, "pure_phone_number", u.PurePhoneNumber, "country_code", u.CountryCode,
	}
}

// redisField is the value of field in an HGETALL reply, or "".
func hashField(reply any, field string) string {
	pairs, _ := reply.([]any)
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] == any(field) {
			v, _ := pairs[i+1].(string)
			return v
		}
	}
	return ""
}

// recordFromRedis reads a user record from an HGETALL reply of its hash.
func readRecord(reply any) (account.User, error) {
	var u account.User
	pairs, _ := reply.([]any)
	var bad error
	for i := 0; i+1 < len(pairs); i += 2 {
		f, _ := pairs[i].(string)
		v, _ := pairs[i+1].(string)
		var err error
		switch f {
		case "id":
			u.ID, err = strconv.ParseInt(v, 10, 64)
		case "appid":
			u.AppID = v
		case "openid":
			u.OpenID = v
		case "unionid":
			u.UnionID = v
		case "previous_unionids":
			u.PreviousUnionIDs = v
		case "nickname":
			u.Nickname = v
		case "avatar_url":
			u.AvatarURL = v
		case "gender":
			u.Gender, err = strconv.Atoi(v)
		case "language":
			u.Language = v
		case "city":
			u.City = v
		case "province":
			u.Province = v
		case "country":
			u.Country = v
		case "phone_number":
			u.PhoneNumber = v
		case "pure_phone_number":
			u.PurePhoneNumber = v
		case "country_code":
			u.CountryCode = v
		case "created_at":
			u.CreatedAt, err = time.Parse(time.RFC3339Nano, v)
		case "updated_at":
			u.UpdatedAt, err = time.Parse(time.RFC3339Nano, v)
		case "last_login_at":
			u.LastLoginAt, err = time.Parse(time.RFC3339Nano, v)
		}
		if err != nil {
			bad = errors.Join(bad, fmt.Errorf("field %s: %w", f, err))
		}
	}
	if bad == nil && (u.ID < 1 || u.AppID == "" || u.OpenID == "") {
		bad = errors.New("the hash has no id, appid or openid")
	}
	if bad != nil {
		return account.User{}, fmt.Errorf("user %d in Redis: %w: %w", u.ID, errDamagedRecord, bad)
	}
	return u, nil
}

// errDamagedRecord is readRecord's error for a user's hash that holds a
// field it cannot read: a record no write of wxlogin's makes, which
// trying again does not mend.
var errDamagedRecord = errors.New("damaged record")

// randomText is n bytes from crypto/rand, as text in the given encoding
// (hex.EncodeToString, base64.RawURLEncoding.EncodeToString, …).
func randomText(n int, encode func([]byte) string) string {
	b := make([]byte, n)
	rand.Read(b) // Never fails: crypto/rand.Read crashes the program rather than return short.
	return encode(b)
}
