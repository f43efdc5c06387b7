package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/datadir"
	"wxlogin/internal/journal"
	"wxlogin/internal/redis"
	"wxlogin/internal/redisstore"
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
	rc := redis.NewClient(cfg)
	defer rc.Close()
	rs, err := openForMove(ctx, rc, durability, meta)
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	if err := rs.Import(ctx, contentsOf(files)); err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	return compareCensus(ctx, out, "wxlogin to-redis", dir, fileCensus(files, rs.PersonHash), rs)
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
	meta, ok, err := redisstore.StoredMeta(ctx, rc)
	if err != nil {
		return fmt.Errorf("wxlogin from-redis: %w", err)
	}
	if !ok {
		return fmt.Errorf("wxlogin from-redis: %s holds no store of wxlogin's (no wx:meta)", redactedRedisAddrs(cfg))
	}
	// Opened unchecked: reading needs no durability.
	rs, err := openForMove(ctx, rc, redisstore.Unchecked, meta)
	if err != nil {
		return fmt.Errorf("wxlogin from-redis: %w", err)
	}
	contents, err := rs.Export(ctx)
	if err != nil {
		return fmt.Errorf("wxlogin from-redis: %w", err)
	}
	mem, err := memoryStoreOf(contents)
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
		if err := compareCensus(ctx, out, "wxlogin from-redis", dir, fileCensus(files, rs.PersonHash), rs); err != nil {
			return fmt.Errorf("%w; nothing was moved into %s", err, dir)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("wxlogin from-redis: %w", err)
	}
	return nil
}

// openForMove opens the store in Redis for a move, which keeps no tokens.
func openForMove(ctx context.Context, rc *redis.Client, durability string, meta account.Meta) (*redisstore.Store, error) {
	return redisstore.Open(ctx, rc, redisstore.Options{Durability: durability, Meta: meta, TokenTTL: time.Hour, TokenMaxAge: time.Hour,
		Now: time.Now, Log: slog.New(slog.DiscardHandler)})
}

// redactedRedisAddrs names the servers of cfg, for an error.
func redactedRedisAddrs(cfg redis.Config) string { return strings.Join(cfg.Addrs, ",") }

// compareCensus counts Redis's store by reading its keys, compares it with
// the files' census, and says both.
func compareCensus(ctx context.Context, out io.Writer, tool, dir string, files storeCensus, rs *redisstore.Store) error {
	counted, err := rs.Census(ctx)
	if err != nil {
		return fmt.Errorf("%s: counting what Redis holds: %w", tool, err)
	}
	inRedis := storeCensus(counted)
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

// contentsOf is the file store's content, as Redis takes it.
func contentsOf(files *userStore) redisstore.Contents {
	files.mu.Lock()
	defer files.mu.Unlock()
	c := redisstore.Contents{LastID: int64(len(files.byID)), Erased: map[int64]time.Time{}, Kept: map[string][]account.Claim{},
		PersonKey: files.personKey}
	for i, u := range files.byID {
		id := int64(i + 1)
		if u == nil {
			c.Erased[id] = files.erasedAt[id]
			continue
		}
		c.Users = append(c.Users, *u)
		for _, cl := range files.claims[id] {
			c.Claims = append(c.Claims, account.Claim{Name: cl.Name, AppID: u.AppID, UserID: id, ClaimedAt: cl.At})
		}
	}
	for hash, list := range files.kept {
		for _, k := range list {
			c.Kept[hash] = append(c.Kept[hash], account.Claim{Name: k.Name, AppID: k.AppID, UserID: k.UserID, ClaimedAt: k.At})
		}
	}
	return c
}

// memoryStoreOf is Redis's content as a file store in memory: every id in
// order, as the record or the erasure it is, then the person key, then the
// claims, each by the user who made it, or kept under its person's hash
// when that user was erased.
func memoryStoreOf(c redisstore.Contents) (*userStore, error) {
	mem := newMemoryUserStore()
	users := map[int64]account.User{}
	for _, u := range c.Users {
		users[u.ID] = u
	}
	for id := int64(1); id <= c.LastID; id++ {
		line := storedLine{erased: &erasure{UserID: id, At: c.Erased[id]}}
		if u, ok := users[id]; ok {
			line = storedLine{user: &u}
		}
		if err := mem.replay(line); err != nil {
			return nil, fmt.Errorf("user %d: %w", id, err)
		}
	}
	if err := mem.replay(storedLine{personKey: c.PersonKey}); err != nil {
		return nil, err
	}
	for _, cl := range c.Claims {
		if err := mem.replay(storedLine{claim: &claimRecord{Name: cl.Name, UserID: cl.UserID, At: cl.ClaimedAt}}); err != nil {
			return nil, fmt.Errorf("claim %q of user %d: %w", cl.Name, cl.UserID, err)
		}
	}
	for hash, list := range c.Kept {
		for _, k := range list {
			if err := mem.replay(storedLine{kept: &keptClaim{Person: hash, Name: k.Name, AppID: k.AppID, UserID: k.UserID, At: k.ClaimedAt}}); err != nil {
				return nil, fmt.Errorf("claim %q of wx:{p:%s}: %w", k.Name, hash, err)
			}
		}
	}
	return mem, nil
}
