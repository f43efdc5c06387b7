package tools

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/datadir"
	"wxlogin/internal/redis"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/users"
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
	files, _, err := users.Inspect(dir)
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w (wxlogin check says more)", err)
	}
	defer files.Close()
	meta, err := files.Meta()
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	rc := redis.NewClient(cfg)
	defer rc.Close()
	rs, err := openForMove(ctx, rc, durability, meta)
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	contents, err := contentsOf(files)
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	if err := rs.Import(ctx, contents); err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	census, err := fileCensus(files, rs.PersonHash)
	if err != nil {
		return fmt.Errorf("wxlogin to-redis: %w", err)
	}
	return compareCensus(ctx, out, "wxlogin to-redis", dir, census, rs)
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
	err = datadir.Create(dir, "from-redis", func(tmp string) error {
		if err := users.Create(tmp, meta, linesOf(contents)); err != nil {
			return err
		}
		files, _, err := users.Inspect(tmp)
		if err != nil {
			return fmt.Errorf("the new store does not check out: %w", err)
		}
		defer files.Close()
		if meanwhile != nil {
			meanwhile()
		}
		census, err := fileCensus(files, rs.PersonHash)
		if err != nil {
			return err
		}
		if err := compareCensus(ctx, out, "wxlogin from-redis", dir, census, rs); err != nil {
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
// claimed a name before they were joined count once), kept claims too,
// each once however many hashes it is found under (account.ClaimCensus).
// It reads the store's lines, where each claim comes after its user.
func fileCensus(files *users.Store, person func(appID, openID, unionID string) string) (storeCensus, error) {
	count, persons, _ := files.Census()
	// The lines are read twice, the records first, rather than held:
	// the persons are known only once every record is.
	var records []account.User
	for text := range files.Lines() {
		l, err := users.ParseLine(text)
		if err != nil {
			return storeCensus{}, err
		}
		if l.User != nil {
			records = append(records, *l.User)
		}
	}
	// Each person by the hash Redis keeps it under, a claim kept under
	// the hash of one of its other unionids counting as the person's.
	personOf, aliases := account.PersonHashes(person, records)
	var claims account.ClaimCensus
	for text := range files.Lines() {
		l, err := users.ParseLine(text)
		if err != nil {
			return storeCensus{}, err
		}
		switch {
		case l.Claim != nil:
			claims.Add(personOf[l.Claim.UserID], l.Claim.Name)
		case l.Kept != nil:
			hashes := append([]string{l.Kept.Person}, l.Kept.Also...)
			for i, h := range hashes {
				hashes[i] = cmp.Or(aliases[h], h)
			}
			claims.AddKept(l.Kept.UserID, l.Kept.Name, hashes...)
		}
	}
	// A user finds the claims kept under each hash of its records, as
	// its own (users.Store's personHashesLocked).
	for _, u := range records {
		for _, h := range account.UserHashes(person, u) {
			claims.Sees(personOf[u.ID], cmp.Or(aliases[h], h))
		}
	}
	return storeCensus{Users: count, Persons: persons, Claims: claims.Count()}, nil
}

// contentsOf is the file store's content, as Redis takes it, read from the
// store's lines: each user or erasure in id order, then the claims, each
// after its user, then the person key and the claims kept of erased users.
func contentsOf(files *users.Store) (redisstore.Contents, error) {
	c := redisstore.Contents{Erased: map[int64]time.Time{}, Kept: map[string][]account.Claim{}, KeptAliases: map[string]string{},
		AliasedRecords: map[string]int64{}}
	appOf := map[int64]string{}            // of each user, for their claims
	aliasedBy := map[string]int64{}        // the erased user each of KeptAliases is of
	alsoOf := map[string]map[string]bool{} // every hash each of KeptAliases is an other hash of
	for text := range files.Lines() {
		l, err := users.ParseLine(text)
		if err != nil {
			return c, err
		}
		switch {
		case l.User != nil:
			c.LastID = l.User.ID
			c.Users = append(c.Users, *l.User)
			appOf[l.User.ID] = l.User.AppID
		case l.Erased != nil:
			c.LastID = l.Erased.UserID
			c.Erased[l.Erased.UserID] = l.Erased.At
		case l.Claim != nil:
			c.Claims = append(c.Claims, account.Claim{Name: l.Claim.Name, AppID: appOf[l.Claim.UserID], UserID: l.Claim.UserID, ClaimedAt: l.Claim.At})
		case l.PersonKey != nil:
			c.PersonKey = l.PersonKey
		case l.Kept != nil:
			k := l.Kept
			c.Kept[k.Person] = append(c.Kept[k.Person], account.Claim{Name: k.Name, AppID: k.AppID, UserID: k.UserID, ClaimedAt: k.At})
			for _, also := range k.Also {
				if alsoOf[also] == nil {
					alsoOf[also] = map[string]bool{}
				}
				alsoOf[also][k.Person] = true
				if k.UserID > aliasedBy[also] {
					c.KeptAliases[also], aliasedBy[also] = k.Person, k.UserID
				}
			}
		case l.Alias != nil:
			c.AliasedRecords[l.Alias.Hash] = l.Alias.UserID
		}
	}
	groupNamingEachOther(c)
	// A hash that is an other hash of several erased users (one app's
	// openid erased under two unionids, its app moved to another Open
	// Platform account between) is an alias of the last one's person, the
	// latest user; the claims kept under the others' are kept under it
	// too, as Redis keeps them: that user, new, took them (takeOwnClaims).
	own := maps.Clone(c.Kept)
	for also, into := range c.KeptAliases {
		for _, person := range slices.Sorted(maps.Keys(alsoOf[also])) {
			if person != into {
				c.Kept[into] = append(c.Kept[into], own[person]...)
			}
		}
	}
	return c, nil
}

// groupNamingEachOther makes one person of the persons of c's kept
// claims whose hashes name each other, in a cycle of KeptAliases: a user
// back in its app without its unionid, through the alias of its erased
// user's app and openid, claims and is erased, its claims kept under that
// hash with the unionid's as an other hash; the person's last record,
// erased after it, keeps its claims under the unionid's hash with that
// one as an other hash (users.Store's Erase). Redis cannot make each an
// alias of the other: the person of the latest erased user among them
// holds the claims of all, as a merge into it would (mergePerson), and
// the others, and every hash that led to one of them, are aliases of it.
func groupNamingEachOther(c redisstore.Contents) {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	for _, start := range slices.Sorted(maps.Keys(c.KeptAliases)) {
		var path []string
		hash := start
		for state[hash] == unseen {
			if _, ok := c.KeptAliases[hash]; !ok {
				break
			}
			state[hash] = onPath
			path = append(path, hash)
			hash = c.KeptAliases[hash]
		}
		if state[hash] == onPath { // a cycle, from hash to the end of path
			cycle := path[slices.Index(path, hash):]
			into := slices.MaxFunc(cycle, func(a, b string) int {
				return cmp.Or(cmp.Compare(latestUser(c.Kept[a]), latestUser(c.Kept[b])), cmp.Compare(b, a))
			})
			for _, member := range cycle {
				if member != into {
					c.Kept[into] = withKept(c.Kept[into], c.Kept[member])
					c.KeptAliases[member] = into
				}
			}
			delete(c.KeptAliases, into)
			for other, to := range c.KeptAliases {
				if slices.Contains(cycle, to) && other != into {
					c.KeptAliases[other] = into
				}
			}
		}
		for _, h := range path {
			state[h] = done
		}
	}
}

// latestUser is the highest user id of claims, 0 for none.
func latestUser(claims []account.Claim) int64 {
	var id int64
	for _, cl := range claims {
		id = max(id, cl.UserID)
	}
	return id
}

// withKept is list with each claim of more it does not hold already.
func withKept(list, more []account.Claim) []account.Claim {
	for _, cl := range more {
		if !slices.ContainsFunc(list, func(k account.Claim) bool {
			return k.Name == cl.Name && k.UserID == cl.UserID && k.ClaimedAt.Equal(cl.ClaimedAt)
		}) {
			list = append(list, cl)
		}
	}
	return list
}

// linesOf is Redis's content as the lines of a file store (users.Create):
// every id in order, as the record or the erasure it is, then the person
// key, then the claims, each by the user who made it, and those kept under
// their person's hash when that user was erased, then the aliases of
// erased users' hashes to records.
func linesOf(c redisstore.Contents) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		records := map[int64]account.User{}
		for _, u := range c.Users {
			records[u.ID] = u
		}
		var line []byte
		emit := func(l users.Line) bool {
			line = l.Append(line[:0])
			return yield(line)
		}
		for id := int64(1); id <= c.LastID; id++ {
			l := users.Line{Erased: &users.Erased{UserID: id, At: c.Erased[id]}}
			if u, ok := records[id]; ok {
				l = users.Line{User: &u}
			}
			if !emit(l) {
				return
			}
		}
		if c.PersonKey != nil && !emit(users.Line{PersonKey: c.PersonKey}) {
			return
		}
		for _, cl := range c.Claims {
			if !emit(users.Line{Claim: &users.Claim{Name: cl.Name, UserID: cl.UserID, At: cl.ClaimedAt}}) {
				return
			}
		}
		also := map[string][]string{} // the other hashes of each kept claims' hash
		for _, hash := range slices.Sorted(maps.Keys(c.KeptAliases)) {
			also[c.KeptAliases[hash]] = append(also[c.KeptAliases[hash]], hash)
		}
		for hash, list := range c.Kept {
			for _, k := range list {
				if !emit(users.Line{Kept: &users.KeptClaim{Person: hash, Also: also[hash], Name: k.Name, AppID: k.AppID, UserID: k.UserID, At: k.ClaimedAt}}) {
					return
				}
			}
		}
		for _, hash := range slices.Sorted(maps.Keys(c.AliasedRecords)) {
			if !emit(users.Line{Alias: &users.Alias{Hash: hash, UserID: c.AliasedRecords[hash]}}) {
				return
			}
		}
	}
}
