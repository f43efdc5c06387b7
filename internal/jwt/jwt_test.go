package jwt

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"wxlogin/internal/redis"
	"wxlogin/internal/redisstore"
	"wxlogin/internal/testkit"
)

// testOptions are an Issuer's options on clock: tokens of ten minutes,
// keys of a day.
func testOptions(clock *testkit.FakeClock) Options {
	return Options{Issuer: "https://login.example.com", Audience: "orders", TTL: 10 * time.Minute, Rotate: 24 * time.Hour, Now: clock.Now}
}

func newTestIssuer(t *testing.T, store Store, opts Options) *Issuer {
	t.Helper()
	is, err := New(t.Context(), store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// jwks is a key set as JWKS serves it.
type jwks struct {
	Keys []struct {
		Kty, Crv, Kid, Use, Alg, X, Y string
	}
}

func keySetOf(t *testing.T, is *Issuer) jwks {
	t.Helper()
	body, err := is.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var set jwks
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	return set
}

func (s jwks) kids() []string {
	var kids []string
	for _, k := range s.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// verify checks token as a verifier would, with set's key of the token's
// kid, and returns its header and claims. (The tests of the root verify
// them with independent libraries too.)
func verify(t *testing.T, set jwks, token string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts; want 3", len(parts))
	}
	decode := func(part string, v any) {
		raw, err := base64.RawURLEncoding.DecodeString(part)
		if err != nil {
			t.Fatalf("part %q is not base64url: %v", part, err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("part %q is not JSON: %v", raw, err)
		}
	}
	decode(parts[0], &header)
	decode(parts[1], &claims)
	i := slices.IndexFunc(set.Keys, func(k struct{ Kty, Crv, Kid, Use, Alg, X, Y string }) bool { return k.Kid == header["kid"] })
	if i < 0 {
		t.Fatalf("kid %v is not in the key set %v", header["kid"], set.kids())
	}
	x, _ := base64.RawURLEncoding.DecodeString(set.Keys[i].X)
	y, _ := base64.RawURLEncoding.DecodeString(set.Keys[i].Y)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if len(sig) != 64 || !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatalf("the signature of %s does not verify with key %s", token, header["kid"])
	}
	return header, claims
}

func TestSignedTokenSaysWhatTheIssuerSets(t *testing.T) {
	clock := testkit.NewFakeClock()
	for _, openID := range []bool{false, true} {
		opts := testOptions(clock)
		opts.OpenID = openID
		is := newTestIssuer(t, NewFile(filepath.Join(t.TempDir(), FileName)), opts)
		token, err := is.Sign(t.Context(), Claims{UserID: 42, AppID: "wxapp", PersonID: 7, OpenID: "o-alice"})
		if err != nil {
			t.Fatal(err)
		}
		header, claims := verify(t, keySetOf(t, is), token)
		if header["alg"] != "ES256" || header["typ"] != "at+jwt" || len(header) != 3 {
			t.Errorf("header = %v; want alg ES256, typ at+jwt and a kid", header)
		}
		now := clock.Now().Unix()
		want := map[string]any{"iss": "https://login.example.com", "sub": "42", "aud": "orders",
			"iat": float64(now), "exp": float64(now + 600), "client_id": "wxapp", "appid": "wxapp", "person": float64(7)}
		if openID {
			want["openid"] = "o-alice"
		}
		jti, _ := claims["jti"].(string)
		delete(claims, "jti")
		if len(jti) < 22 {
			t.Errorf("jti = %q; want 16 random bytes", jti)
		}
		if !mapsEqual(claims, want) {
			t.Errorf("OpenID %v: claims = %v; want %v and a jti", openID, claims, want)
		}
	}
}

func mapsEqual(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestEveryTokenHasItsOwnID(t *testing.T) {
	is := newTestIssuer(t, NewFile(filepath.Join(t.TempDir(), FileName)), testOptions(testkit.NewFakeClock()))
	seen := map[string]bool{}
	for range 100 {
		token, err := is.Sign(t.Context(), Claims{UserID: 1, AppID: "wxapp", PersonID: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, claims := verify(t, keySetOf(t, is), token)
		jti := claims["jti"].(string)
		if seen[jti] {
			t.Fatalf("jti %s given twice", jti)
		}
		seen[jti] = true
	}
}

// TestKeysRotate follows the keys through three periods: the next key is
// published a period before it signs, a key that stopped signing stays
// published until its last token has expired (MaxTTL on), and is then
// dropped from the set and from the store.
func TestKeysRotate(t *testing.T) {
	clock := testkit.NewFakeClock()
	path := filepath.Join(t.TempDir(), FileName)
	opts := testOptions(clock)
	is := newTestIssuer(t, NewFile(path), opts)
	signer := func() string {
		t.Helper()
		token, err := is.Sign(t.Context(), Claims{UserID: 1, AppID: "wxapp", PersonID: 1})
		if err != nil {
			t.Fatal(err)
		}
		header, _ := verify(t, keySetOf(t, is), token)
		return header["kid"].(string)
	}
	first := keySetOf(t, is).kids()
	if len(first) != 2 {
		t.Fatalf("a new issuer publishes %v; want the current key and the next", first)
	}
	if got := signer(); got != first[0] {
		t.Errorf("signed with %s; want the current key, %s, first in the set", got, first[0])
	}
	clock.Advance(opts.Rotate)
	if got := signer(); got != first[1] {
		t.Errorf("a period later, signed with %s; want the key published a period ahead, %s", got, first[1])
	}
	second := keySetOf(t, is).kids()
	if len(second) != 3 || second[0] != first[1] || !slices.Contains(second, first[0]) {
		t.Errorf("a period later the set is %v; want %s first, %s still, and a next key", second, first[1], first[0])
	}
	// The first key signed until its period ended (the periods start on
	// the multiples of Rotate); its tokens live at most MaxTTL past that.
	firstUntil := is.keys[0].until
	clock.Advance(firstUntil.Add(MaxTTL).Sub(clock.Now()))
	if err := is.refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(keySetOf(t, is).kids(), first[0]) {
		t.Errorf("MaxTTL after the first key stopped signing, it is gone from the set; want it kept to the end")
	}
	if kept, err := NewFile(path).Keys(t.Context()); err != nil || len(kept) != 4 {
		t.Errorf("MaxTTL after the first key stopped signing, the file keeps %d keys (%v); want all 4 still", len(kept), err)
	}
	clock.Advance(time.Second)
	if err := is.refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	third := keySetOf(t, is).kids()
	if slices.Contains(third, first[0]) || len(third) != 3 {
		t.Errorf("past MaxTTL the set is %v; want the first key dropped, the second kept, the current and the next", third)
	}
	kept, err := NewFile(path).Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 3 {
		t.Errorf("the file keeps %d keys; want 3, the first dropped", len(kept))
	}
}

// TestInstancesOnOneStoreSignWithOneKey starts issuers at once on one
// store, as instances on one Redis do: whichever makes a period's key
// first, every one signs with it and publishes the same set. On the file
// (whose mutex takes them in turn) and on a real Redis (where HSETNX
// decides).
func TestInstancesOnOneStoreSignWithOneKey(t *testing.T) {
	for name, store := range map[string]func(t *testing.T) Store{
		"file": func(t *testing.T) Store { return NewFile(filepath.Join(t.TempDir(), FileName)) },
		"redis": func(t *testing.T) Store {
			srv := testkit.StartRedis(t)
			rc := redis.NewClient(redis.Config{Addrs: []string{srv.Addr}, PoolSize: 8, Timeout: 5 * time.Second})
			t.Cleanup(rc.Close)
			return redisstore.NewJWTKeys(rc)
		},
	} {
		t.Run(name, func(t *testing.T) {
			clock := testkit.NewFakeClock()
			store := store(t)
			for round := range 5 {
				issuers := make([]*Issuer, 8)
				var wg sync.WaitGroup
				errs := make(chan error, len(issuers))
				for i := range issuers {
					wg.Go(func() {
						is, err := New(t.Context(), store, testOptions(clock))
						issuers[i] = is
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				want := keySetOf(t, issuers[0]).kids()
				for i, is := range issuers {
					if got := keySetOf(t, is).kids(); !slices.Equal(got, want) {
						t.Errorf("round %d: instance %d publishes %v; instance 0 %v", round, i, got, want)
					}
				}
				token, err := issuers[1].Sign(t.Context(), Claims{UserID: 1})
				if err != nil {
					t.Fatal(err)
				}
				verify(t, keySetOf(t, issuers[7]), token) // another instance's set verifies it
				clock.Advance(testOptions(clock).Rotate)  // the next round starts in a period with its key made ahead
			}
		})
	}
}

// TestAfterAGapKeysStartOnTheGrid stops for longer than a period: the key
// made at the restart signs from the start of the current period, so that
// instances starting apart agree on it.
func TestAfterAGapKeysStartOnTheGrid(t *testing.T) {
	clock := testkit.NewFakeClock()
	store := NewFile(filepath.Join(t.TempDir(), FileName))
	opts := testOptions(clock)
	newTestIssuer(t, store, opts)
	clock.Advance(5*opts.Rotate + time.Hour)
	a := newTestIssuer(t, store, opts)
	clock.Advance(time.Hour)
	b := newTestIssuer(t, store, opts)
	ka, _ := a.signingAt(clock.Now())
	kb, _ := b.signingAt(clock.Now())
	if ka.kid != kb.kid || !ka.from.Equal(clock.Now().Truncate(opts.Rotate)) {
		t.Errorf("after a gap, instances sign with %s from %v and %s; want one key from %v", ka.kid, ka.from, kb.kid, clock.Now().Truncate(opts.Rotate))
	}
}

// TestDamagedKeyFileIsRefused flips every bit of a key file, one at a
// time: each flip is refused (almost all as ErrDamaged; a flip of the
// version as a version this wxlogin does not know), or leaves the same
// keys; never other keys under the same names.
func TestDamagedKeyFileIsRefused(t *testing.T) {
	clock := testkit.NewFakeClock()
	path := filepath.Join(t.TempDir(), FileName)
	want := keySetOf(t, newTestIssuer(t, NewFile(path), testOptions(clock)))
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var refused, same int
	for i := range good {
		for bit := range 8 {
			flipped := slices.Clone(good)
			flipped[i] ^= 1 << bit
			if err := os.WriteFile(path, flipped, 0o600); err != nil {
				t.Fatal(err)
			}
			is, err := New(t.Context(), NewFile(path), testOptions(clock))
			switch {
			case errors.Is(err, ErrDamaged) || err != nil && strings.Contains(err.Error(), "key file version"):
				refused++
			case err == nil && mapsEqual(map[string]any{"k": keySetOf(t, is)}, map[string]any{"k": want}):
				same++
			default:
				t.Fatalf("byte %d bit %d flipped: New = %v; want ErrDamaged or the same keys", i, bit, err)
			}
		}
	}
	t.Logf("%d flips refused, %d harmless (JSON whitespace)", refused, same)
}

// TestDamagedRecordIsRefused changes one field of a kept record, as damage
// in Redis would: the record is refused, naming its slot and never
// quoting the key.
func TestDamagedRecordIsRefused(t *testing.T) {
	clock := testkit.NewFakeClock()
	store := NewFile(filepath.Join(t.TempDir(), FileName))
	newTestIssuer(t, store, testOptions(clock))
	kept, err := store.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var slot string
	var r record
	for slot = range kept {
		json.Unmarshal(kept[slot], &r)
		break
	}
	other, err := newKey(clock.Now(), clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherD, _ := other.priv.Bytes()
	for name, change := range map[string]func(r *record){
		"another private scalar": func(r *record) { r.D = base64.RawURLEncoding.EncodeToString(otherD) },
		"another public point":   func(r *record) { r.X, r.Y = other.x, other.y },
		"a scalar of no key":     func(r *record) { r.D = base64.RawURLEncoding.EncodeToString(make([]byte, 32)) },
		"not base64url":          func(r *record) { r.D = "!!" },
		"another curve":          func(r *record) { r.Crv = "P-384" },
		"another start":          func(r *record) { r.From++ },
		"an empty period":        func(r *record) { r.Until = r.From },
	} {
		changed := r
		change(&changed)
		data, _ := json.Marshal(changed)
		_, err := parseKey(slot, data)
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), slot) {
			t.Errorf("%s: parseKey = %v; want ErrDamaged naming slot %s", name, err, slot)
		}
		if err != nil && strings.Contains(err.Error(), r.D) {
			t.Errorf("%s: the error quotes the private key", name)
		}
	}
	if _, err := parseKey(slot, []byte("{")); !errors.Is(err, ErrDamaged) {
		t.Errorf("a record that is not JSON: parseKey = %v; want ErrDamaged", err)
	}
}

func TestKeyFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	newTestIssuer(t, NewFile(path), testOptions(testkit.NewFakeClock()))
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("the key file is %v; want 0600", info.Mode().Perm())
	}
}

func TestOptionsOutOfBoundsAreRefused(t *testing.T) {
	clock := testkit.NewFakeClock()
	for name, change := range map[string]func(o *Options){
		"no lifetime":         func(o *Options) { o.TTL = 0 },
		"lifetime over a day": func(o *Options) { o.TTL = MaxTTL + time.Second },
		"rotation too short":  func(o *Options) { o.Rotate = MinRotate - time.Second },
		"no issuer":           func(o *Options) { o.Issuer = "" },
		"no audience":         func(o *Options) { o.Audience = "" },
	} {
		opts := testOptions(clock)
		change(&opts)
		if _, err := New(t.Context(), NewFile(filepath.Join(t.TempDir(), FileName)), opts); err == nil {
			t.Errorf("%s: New succeeded; want an error", name)
		}
	}
}

// TestRunTakesInAnotherInstancesKeys: while Run refreshes, a key another
// instance made on the shared store (here, one of a period that began
// while this instance made none) is published by this one too, and a
// store that fails is logged, and tried again.
func TestRunTakesInAnotherInstancesKeys(t *testing.T) {
	clock := testkit.NewFakeClock()
	store := &failingStore{Store: NewFile(filepath.Join(t.TempDir(), FileName))}
	opts := testOptions(clock)
	opts.RefreshEvery = time.Millisecond
	is := newTestIssuer(t, store, opts)
	logs := &testkit.SyncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		is.Run(ctx, slog.New(slog.NewTextHandler(logs, nil)))
	}()
	defer func() { cancel(); <-done }()

	store.fail.Store(true)
	testkit.WaitWithin(t, 10*time.Second, "the failure logged", func() bool { return strings.Contains(logs.String(), "jwt signing keys not refreshed") })
	store.fail.Store(false)
	clock.Advance(opts.Rotate) // a period later, another instance makes the next key
	other := newTestIssuer(t, store, opts)
	want := keySetOf(t, other).kids()
	testkit.WaitWithin(t, 10*time.Second, "the other instance's keys published", func() bool {
		is.mu.Lock()
		defer is.mu.Unlock()
		var set jwks
		json.Unmarshal(is.jwks, &set)
		return slices.Equal(set.kids(), want)
	})
}

// failingStore is a Store that fails while fail is set.
type failingStore struct {
	Store
	fail atomic.Bool
}

func (f *failingStore) Keys(ctx context.Context) (map[string][]byte, error) {
	if f.fail.Load() {
		return nil, errors.New("the store is down")
	}
	return f.Store.Keys(ctx)
}

// TestRunStopsWithItsContext: the refresh loop has an owner.
func TestRunStopsWithItsContext(t *testing.T) {
	is := newTestIssuer(t, NewFile(filepath.Join(t.TempDir(), FileName)), testOptions(testkit.NewFakeClock()))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		is.Run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestDiscoveryNamesTheIssuerAndItsKeys(t *testing.T) {
	is := newTestIssuer(t, NewFile(filepath.Join(t.TempDir(), FileName)), testOptions(testkit.NewFakeClock()))
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Claims  []string `json:"claims_supported"`
	}
	if err := json.Unmarshal(is.Discovery(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != "https://login.example.com" || doc.JWKSURI != "https://login.example.com/.well-known/jwks.json" || slices.Contains(doc.Claims, "openid") {
		t.Errorf("discovery = %+v; want the issuer, its jwks_uri, and no openid claim", doc)
	}
}

// BenchmarkSign is one access token: its claims, an ES256 signature, the
// encoding.
func BenchmarkSign(b *testing.B) {
	is, err := New(b.Context(), NewFile(filepath.Join(b.TempDir(), FileName)), testOptions(testkit.NewFakeClock()))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := is.Sign(b.Context(), Claims{UserID: 42, AppID: "wxapp", PersonID: 7}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDeletedKeysAreReplaced deletes every kept key, as an operator does
// after a leak (DEL wx:jwt:keys): the next refresh, Run's within a minute,
// makes new keys, and the old ones are published no more.
func TestDeletedKeysAreReplaced(t *testing.T) {
	clock := testkit.NewFakeClock()
	store := NewFile(filepath.Join(t.TempDir(), FileName))
	is := newTestIssuer(t, store, testOptions(clock))
	old := keySetOf(t, is).kids()
	kept, err := store.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Drop(t.Context(), slices.Collect(maps.Keys(kept))); err != nil {
		t.Fatal(err)
	}
	if err := is.refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	now := keySetOf(t, is).kids()
	if len(now) != 2 || slices.ContainsFunc(now, func(kid string) bool { return slices.Contains(old, kid) }) {
		t.Errorf("after the keys were deleted, the set is %v; want two new keys, none of %v", now, old)
	}
	token, err := is.Sign(t.Context(), Claims{UserID: 1})
	if err != nil {
		t.Fatal(err)
	}
	verify(t, keySetOf(t, is), token)
}
