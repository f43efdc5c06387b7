package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/datadir"
	"wxlogin/internal/journal"
	"wxlogin/internal/redis"
)

// This file moves a store between a data directory and Redis, both ways,
// as two tools: wxlogin to-redis and wxlogin from-redis. Each checks the
// counts of what it moved on both sides, read back independently, and
// fails if they differ. Tokens are not moved: users log in again, as
// after a kill -9, silently through wx.login(). No server may run on
// either side meanwhile: the data directory's lock says so for the files;
// for Redis, to-redis refuses one that holds users, and the operator
// stops the instances before from-redis.

// storeCensus is what both sides of a move must agree on.
type storeCensus struct {
	Users, Persons, Claims int
}

func (c storeCensus) String() string {
	return fmt.Sprintf("%d users (%d persons) and %d claims", c.Users, c.Persons, c.Claims)
}

// moveToRedis writes the data directory's store into an empty Redis.
func moveToRedis(ctx context.Context, dir string, cfg redis.Config, durability string, out io.Writer) error {
	d, err := datadir.Inspect(dir)
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	defer d.Release()
	files, _, err := inspectUserStore(dir)
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w (wxlogin check says more)", err)
	}
	defer files.Close()
	meta, err := files.meta()
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	rs, err := openRedisStore(ctx, cfg, durability, meta, time.Hour, time.Hour, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	defer rs.close()
	if err := rs.writeAll(ctx, files); err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	return compareCensus(ctx, out, "wxlogin to-redis", dir, fileCensus(files, rs.personHash), rs)
}

// moveFromRedis writes Redis's store into a new data directory: new, or
// empty. The store is written into a directory of its own beside it, and
// renamed into place only once the counts on both sides agree: a move that
// fails (a wxlogin still writing changes Redis's count) leaves the target
// as it was, so that neither wxlogin check nor a start-up takes what it
// wrote for a good store; what it wrote is removed, and a move killed
// midway leaves it hidden beside the target, where the next move removes
// it.
func moveFromRedis(ctx context.Context, dir string, cfg redis.Config, out io.Writer) error {
	return moveFromRedisChecked(ctx, dir, cfg, out, nil)
}

// moveFromRedisChecked is moveFromRedis, with meanwhile run between the
// read of Redis's store and its count (nil in the tool): in tests, a
// wxlogin that still writes, at the one moment that changes the counts.
func moveFromRedisChecked(ctx context.Context, dir string, cfg redis.Config, out io.Writer, meanwhile func()) (err error) {
	if err := datadir.NewOrEmpty(dir); err != nil {
		return fmt.Errorf("wxlogin from-redis: %w: move into a new directory", err)
	}
	rc := redis.NewClient(cfg)
	defer rc.Close()
	metaJSON, err := rc.Do(ctx, "GET", redisMetaKey)
	if err != nil {
		return fmt.Errorf("wxlogin from-redis: %w", err)
	}
	stored, _ := metaJSON.(string)
	var meta account.Meta
	if json.Unmarshal([]byte(stored), &meta) != nil {
		return fmt.Errorf("wxlogin from-redis: %s holds no store of wxlogin's (no %s)", redactedRedisAddrs(cfg), redisMetaKey)
	}
	// Opened unchecked: reading needs no durability.
	rs, err := openRedisStore(ctx, cfg, redisUnchecked, meta, time.Hour, time.Hour, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("wxlogin from-redis: %w", err)
	}
	defer rs.close()
	mem, err := rs.readAll(ctx)
	if err != nil {
		return fmt.Errorf("wxlogin from-redis: %w", err)
	}
	err = datadir.Create(dir, "from-redis", func(tmp string) error {
		metaLine, _ := json.Marshal(meta) // Cannot fail: plain data.
		if err := journal.Create(tmp, "users", metaLine, mem.snapshotLines()); err != nil {
			return err
		}
		files, _, err := inspectUserStore(tmp)
		if err != nil {
			return fmt.Errorf("the new store does not check out: %w", err)
		}
		defer files.Close()
		if meanwhile != nil {
			meanwhile()
		}
		if err := compareCensus(ctx, out, "wxlogin from-redis", dir, fileCensus(files, rs.personHash), rs); err != nil {
			return fmt.Errorf("%w; nothing was moved into %s", err, dir)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("wxlogin from-redis: %w", err)
	}
	return nil
}

// redactedRedisAddrs names the servers of cfg, for an error.
func redactedRedisAddrs(cfg redis.Config) string { return strings.Join(cfg.Addrs, ",") }

// compareCensus counts Redis's store by reading its keys, compares it with
// the files' census, and says both.
func compareCensus(ctx context.Context, out io.Writer, tool, dir string, files storeCensus, rs *redisStore) error {
	inRedis, err := rs.census(ctx)
	if err != nil {
		return fmt.Errorf("%s: counting what Redis holds: %w", tool, err)
	}
	fmt.Fprintf(out, "%s: %v\nRedis: %v\n", dir, files, inRedis)
	if files != inRedis {
		return fmt.Errorf("%s: the counts differ", tool)
	}
	fmt.Fprintln(out, "ok: the counts agree")
	return nil
}

// fileCensus counts a file store as a person sees it: users, persons, and
// claims by person and name (so two records of one person that both
// claimed a name before they were joined count once), kept claims too.
func fileCensus(s *userStore, person func(appID, openID, unionID string) string) storeCensus {
	users, persons, _ := s.census()
	claims := map[string]bool{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, list := range s.claims {
		u := s.byID[id-1]
		if u == nil {
			continue
		}
		for _, c := range list {
			claims[person(u.AppID, u.OpenID, u.UnionID)+"\x00"+c.Name] = true
		}
	}
	for hash, list := range s.kept {
		for _, k := range list {
			claims[hash+"\x00"+k.Name] = true
		}
	}
	return storeCensus{Users: users, Persons: persons, Claims: len(claims)}
}

// census counts what Redis holds, by its keys: users with a record, the
// persons they belong to, and the claims of every person.
func (s *redisStore) census(ctx context.Context) (storeCensus, error) {
	var c storeCensus
	persons := map[string]bool{}
	personOf := map[int64]string{} // of each user with a record
	last, err := s.highestID(ctx)
	if err != nil {
		return c, err
	}
	for id := int64(1); id <= last; id++ {
		_, person, ok, err := s.record(ctx, id)
		if err != nil {
			return c, err
		}
		if ok {
			c.Users++
			persons[person] = true
			personOf[id] = person
		}
	}
	c.Persons = len(persons)
	claims := map[string]bool{} // by the claimant's person (its hash if erased) and name
	keys, err := s.rc.Scan(ctx, "wx:{p:*}")
	if err != nil {
		return c, err
	}
	for _, key := range keys {
		reply, err := s.rc.Do(ctx, "HGETALL", key)
		if err != nil {
			return c, err
		}
		list, err := claimsIn(reply)
		if err != nil {
			return c, err
		}
		for _, claim := range list {
			person, live := personOf[claim.UserID]
			if !live {
				person = strings.TrimSuffix(strings.TrimPrefix(key, "wx:{p:"), "}")
			}
			claims[person+"\x00"+claim.Name] = true
		}
	}
	c.Claims = len(claims)
	return c, nil
}

// lastID is the last user id given, 0 for none.
func (s *redisStore) lastID(ctx context.Context) (int64, error) {
	v, err := s.rc.Do(ctx, "GET", redisIDsKey)
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
func (s *redisStore) highestID(ctx context.Context) (int64, error) {
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

// writeAll writes every user, erasure and claim of files into Redis,
// which must hold no users. The last id goes last: a move cut short can be
// run again, and writes the same.
func (s *redisStore) writeAll(ctx context.Context, files *userStore) error {
	if last, err := s.lastID(ctx); err != nil || last != 0 {
		return errors.Join(err, errors.New("this Redis already holds users: move into an empty Redis (or database)"))
	}
	files.mu.Lock()
	defer files.mu.Unlock()
	if files.personKey != nil {
		// Claims kept of erased users are under the files' key: Redis takes
		// it, which it can while it holds no users.
		if _, err := s.rc.Do(ctx, "SET", redisPersonKeyKey, hex.EncodeToString(files.personKey)); err != nil {
			return err
		}
		s.personKey = files.personKey
	}
	for i, u := range files.byID {
		id := int64(i + 1)
		if u == nil {
			at := files.erasedAt[id]
			if _, err := s.rc.Pipeline(ctx, [][]string{{"DEL", redisUserKey(id)}, {"HSET", redisUserKey(id), "erased", formatRedisTime(at)}}); err != nil {
				return err
			}
			continue
		}
		person := s.personHash(u.AppID, u.OpenID, u.UnionID)
		hset := []string{"HSET", redisUserKey(id), "id", strconv.FormatInt(id, 10), "appid", u.AppID, "openid", u.OpenID,
			"person", person, "v", "1", "created_at", formatRedisTime(u.CreatedAt), "updated_at", formatRedisTime(u.UpdatedAt),
			"last_login_at", formatRedisTime(u.LastLoginAt)}
		fields := redisFields(u)
		for j := 0; j < len(fields); j += 2 {
			if fields[j+1] != "" {
				hset = append(hset, fields[j], fields[j+1])
			}
		}
		replies, err := s.rc.Pipeline(ctx, [][]string{{"DEL", redisUserKey(id)}, hset})
		if err == nil {
			err = firstRedisError(replies)
		}
		if err == nil {
			_, err = s.rc.Do(ctx, "SET", redisOpenIDKey(u.AppID, u.OpenID), strconv.FormatInt(id, 10))
		}
		if err == nil {
			_, err = s.rc.Do(ctx, "HSET", redisPersonKey(person), "u:"+strconv.FormatInt(id, 10), u.AppID)
		}
		if err != nil {
			return err
		}
		for _, c := range files.claims[id] {
			v := formatRedisClaim(account.Claim{AppID: u.AppID, UserID: id, ClaimedAt: c.At})
			if _, err := mergeClaimsScript.Run(ctx, s.rc, []string{redisPersonKey(person)}, "c:"+c.Name, v); err != nil {
				return err
			}
		}
	}
	for hash, list := range files.kept {
		for _, k := range list {
			v := formatRedisClaim(account.Claim{AppID: k.AppID, UserID: k.UserID, ClaimedAt: k.At})
			if _, err := mergeClaimsScript.Run(ctx, s.rc, []string{redisPersonKey(hash)}, "c:"+k.Name, v); err != nil {
				return err
			}
		}
	}
	_, err := s.rc.Do(ctx, "SET", redisIDsKey, strconv.Itoa(len(files.byID)))
	return err
}

// readAll reads Redis's store into a file store in memory: every user, in
// id order (an id with no record, erased or never used, as an erasure, so
// that ids stay as they are), then the claims, each by the user who made
// it, or kept under its person's hash when that user was erased.
func (s *redisStore) readAll(ctx context.Context) (*userStore, error) {
	mem := newMemoryUserStore()
	last, err := s.highestID(ctx)
	if err != nil {
		return nil, err
	}
	for id := int64(1); id <= last; id++ {
		u, _, ok, err := s.record(ctx, id)
		if err != nil {
			return nil, err
		}
		line := storedLine{user: &u}
		if !ok {
			erasedAt, err := s.rc.Do(ctx, "HGET", redisUserKey(id), "erased")
			if err != nil {
				return nil, err
			}
			at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(erasedAt))
			if at.IsZero() {
				at = s.stamp(time.Second) // an id a lost race took: never a user
			}
			line = storedLine{erased: &erasure{UserID: id, At: at}}
		}
		if err := mem.replay(line); err != nil {
			return nil, fmt.Errorf("user %d: %w", id, err)
		}
	}
	if err := mem.replay(storedLine{personKey: s.personKey}); err != nil {
		return nil, err
	}
	keys, err := s.rc.Scan(ctx, "wx:{p:*")
	if err != nil {
		return nil, err
	}
	for _, key := range keys {
		hash := strings.TrimSuffix(strings.TrimPrefix(key, "wx:{p:"), "}")
		reply, err := s.rc.Do(ctx, "HGETALL", key)
		if err != nil {
			return nil, err
		}
		claims, err := claimsIn(reply)
		if err != nil {
			return nil, err
		}
		for _, c := range claims {
			line := storedLine{kept: &keptClaim{Person: hash, Name: c.Name, AppID: c.AppID, UserID: c.UserID, At: c.ClaimedAt}}
			if c.UserID >= 1 && c.UserID <= last && mem.byID[c.UserID-1] != nil {
				line = storedLine{claim: &claimRecord{Name: c.Name, UserID: c.UserID, At: c.ClaimedAt}}
			}
			if err := mem.replay(line); err != nil {
				return nil, fmt.Errorf("claim %q of %s: %w", c.Name, key, err)
			}
		}
	}
	return mem, nil
}
