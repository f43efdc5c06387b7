// Package jwt signs wxlogin's short-lived access tokens, ES256 JSON Web
// Tokens (RFC 7519) that the company's other services verify offline, and
// publishes the public keys that verify them as a JWKS (RFC 7517).
//
// An Issuer signs with one key at a time. Each key signs for one period
// (Options.Rotate), and the next period's key is made and published a whole
// period before it signs, so a verifier that caches the key set has it
// before it meets a token signed with it. A key that has stopped signing
// stays published until every token it signed has expired (MaxTTL after its
// last signature). The keys live in a Store: a file of the data directory
// (File), or Redis, where every instance on it signs with the same keys.
//
// Only signing is here: wxlogin never verifies its own JWTs. Its own
// opaque token is what it checks; a JWT is for the services that do not
// call it back.
package jwt

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Limits of the options.
const (
	// MaxTTL is the longest a token may live. A key that has stopped
	// signing is published this long after, whatever the TTL was when it
	// signed.
	MaxTTL = 24 * time.Hour
	// MinRotate is the shortest period a key signs for: the next key is
	// published a period ahead, which must outlast a verifier's cache of
	// the key set.
	MinRotate = time.Hour
)

// Claims are what a token says of its user, beside the registered claims
// the Issuer sets (iss, sub, aud, iat, exp, jti).
type Claims struct {
	UserID   int64  // sub, as a decimal string
	AppID    string // appid: the mini program the user logged in to
	PersonID int64  // person: one person across the company's mini programs
	OpenID   string // openid, sent only if Options.OpenID
}

// Options configure an Issuer.
type Options struct {
	Issuer   string        // iss: the URL the discovery document is under
	Audience string        // aud: the services the tokens are for
	TTL      time.Duration // how long a token lives, at most MaxTTL
	Rotate   time.Duration // how long a key signs, at least MinRotate
	OpenID   bool          // whether a token carries the user's openid
	Now      func() time.Time
	// RefreshEvery is how often Run refreshes the keys; 0 for a minute
	// (or a quarter of Rotate, if that is shorter).
	RefreshEvery time.Duration
}

// Issuer signs access tokens. It is safe for concurrent use.
type Issuer struct {
	opts  Options
	store Store

	refreshing sync.Mutex // held by one refresh at a time
	mu         sync.Mutex // guards keys and jwks
	keys       []*key     // by the start of their period
	jwks       []byte     // the key set as JWKS serves it
}

// New is an Issuer signing with the keys in store, which it makes when
// there are none yet.
func New(ctx context.Context, store Store, opts Options) (*Issuer, error) {
	switch {
	case opts.TTL <= 0 || opts.TTL > MaxTTL:
		return nil, fmt.Errorf("token lifetime %v is not between 0 and %v", opts.TTL, MaxTTL)
	case opts.Rotate < MinRotate:
		return nil, fmt.Errorf("rotation period %v is shorter than %v", opts.Rotate, MinRotate)
	case opts.Issuer == "" || opts.Audience == "":
		return nil, errors.New("an issuer and an audience are needed")
	}
	is := &Issuer{opts: opts, store: store}
	if err := is.refresh(ctx); err != nil {
		return nil, err
	}
	return is, nil
}

// TTL is how long a token lives.
func (is *Issuer) TTL() time.Duration { return is.opts.TTL }

// Sign is a new token for c, signed with the current key.
func (is *Issuer) Sign(ctx context.Context, c Claims) (string, error) {
	now := is.opts.Now()
	k, err := is.current(ctx, now)
	if err != nil {
		return "", err
	}
	// Randomness is crypto/rand's, not injected: since Go 1.26 ECDSA
	// ignores any other source, and a jti must not repeat.
	var jti [16]byte
	rand.Read(jti[:]) // Never fails: crypto/rand.Read crashes the program rather than return short.
	claims := struct {
		Iss    string `json:"iss"`
		Sub    string `json:"sub"`
		Aud    string `json:"aud"`
		Iat    int64  `json:"iat"`
		Exp    int64  `json:"exp"`
		Jti    string `json:"jti"`
		Client string `json:"client_id"`
		AppID  string `json:"appid"`
		Person int64  `json:"person"`
		OpenID string `json:"openid,omitempty"`
	}{
		Iss: is.opts.Issuer, Sub: strconv.FormatInt(c.UserID, 10), Aud: is.opts.Audience,
		Iat: now.Unix(), Exp: now.Add(is.opts.TTL).Unix(), Jti: base64.RawURLEncoding.EncodeToString(jti[:]),
		Client: c.AppID, AppID: c.AppID, Person: c.PersonID,
	}
	if is.opts.OpenID {
		claims.OpenID = c.OpenID
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	// The JWS Compact Serialization (RFC 7515 §7.1): header.payload.signature,
	// the signature over the first two as ES256 makes it (RFC 7518 §3.4):
	// SHA-256, then R and S as 32 bytes each.
	token := make([]byte, 0, len(k.header)+2+base64.RawURLEncoding.EncodedLen(len(payload))+base64.RawURLEncoding.EncodedLen(64))
	token = append(token, k.header...)
	token = append(token, '.')
	token = base64.RawURLEncoding.AppendEncode(token, payload)
	digest := sha256.Sum256(token)
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, digest[:])
	if err != nil {
		return "", err
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	token = append(token, '.')
	return string(base64.RawURLEncoding.AppendEncode(token, sig[:])), nil
}

// JWKS is the key set that verifies every token not yet expired, and the
// next period's key: a JSON Web Key Set (RFC 7517 §5).
func (is *Issuer) JWKS(ctx context.Context) ([]byte, error) {
	if _, err := is.current(ctx, is.opts.Now()); err != nil {
		return nil, err
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.jwks, nil
}

// Discovery is the discovery document, served at
// /.well-known/openid-configuration under the issuer: where the keys are,
// and what the tokens are. wxlogin issues access tokens only, through its
// own login, so the document has no authorization endpoint, names no
// response types, and has no token_endpoint (POST /token is not OAuth's):
// verifiers read issuer and jwks_uri from it (Supabase's third-party
// auth, go-oidc, jose's discovery helpers do).
func (is *Issuer) Discovery() []byte {
	claims := []string{"iss", "sub", "aud", "iat", "exp", "jti", "client_id", "appid", "person"}
	if is.opts.OpenID {
		claims = append(claims, "openid")
	}
	doc := map[string]any{
		"issuer":                                is.opts.Issuer,
		"jwks_uri":                              is.opts.Issuer + "/.well-known/jwks.json",
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"claims_supported":                      claims,
	}
	body, _ := json.Marshal(doc) // plain data: never fails
	return body
}

// Run keeps the keys fresh until ctx ends: the next period's key made
// ahead, keys no token needs any more dropped, and keys another instance
// made taken in. Failures are logged and tried again at the next round.
func (is *Issuer) Run(ctx context.Context, log *slog.Logger) {
	every := cmp.Or(is.opts.RefreshEvery, min(is.opts.Rotate/4, time.Minute))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := is.refresh(ctx); err != nil && ctx.Err() == nil {
				log.Warn("jwt signing keys not refreshed", "err", err)
			}
		}
	}
}

// current is the key that signs at now, made if need be. When it is kept
// but the next period's is not (a period has just begun), the keys are
// refreshed first, so that the next key is published from the start of
// the period before it; if that fails, the current key still signs, and
// Run tries again and logs it.
func (is *Issuer) current(ctx context.Context, now time.Time) (*key, error) {
	if k, next := is.signingAt(now); k != nil {
		if !next && is.refreshing.TryLock() {
			// One request makes the next key; the others sign on at once.
			is.refreshLocked(ctx)
			is.refreshing.Unlock()
		}
		return k, nil
	}
	if err := is.refresh(ctx); err != nil {
		return nil, err
	}
	if k, _ := is.signingAt(now); k != nil {
		return k, nil
	}
	return nil, errors.New("no signing key for now, after making one") // only a clock that jumped back during refresh
}

// signingAt is the kept key whose period holds now, or nil, and whether
// the key of the period after it is kept too.
func (is *Issuer) signingAt(now time.Time) (k *key, next bool) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if k = covering(is.keys, now); k != nil {
		next = covering(is.keys, k.until) != nil
	}
	return k, next
}

// refresh reads the keys kept, makes the current period's key and the
// next's where they are missing, and drops those no token needs. Where
// two instances make a period's key at once, the store keeps the first,
// and both sign with it.
func (is *Issuer) refresh(ctx context.Context) error {
	is.refreshing.Lock()
	defer is.refreshing.Unlock()
	return is.refreshLocked(ctx)
}

// refreshLocked is refresh, with is.refreshing held.
func (is *Issuer) refreshLocked(ctx context.Context) error {
	kept, err := is.store.Keys(ctx)
	if err != nil {
		return err
	}
	keys, err := parseKeys(kept)
	if err != nil {
		return err
	}
	now := is.opts.Now().Truncate(time.Second)
	// The current key, then the next: each period starts where the one
	// before ends. After a time with no key (a first start, or a long stop),
	// periods start on the multiples of Rotate, on which every instance
	// agrees.
	at := now
	for range 2 {
		if covering(keys, at) == nil {
			from := at.Truncate(is.opts.Rotate)
			if last := latestFrom(keys, at); last != nil && last.until.After(from) {
				from = last.until
			}
			if keys, err = is.add(ctx, from, from.Add(is.opts.Rotate)); err != nil {
				return err
			}
		}
		k := covering(keys, at)
		if k == nil {
			// Only a store that lost the key just added, or another
			// instance's key for another period in its slot.
			return fmt.Errorf("no signing key covers %v after one was made", at)
		}
		at = k.until
	}
	var old []string
	for _, k := range keys {
		if !k.needed(now) {
			old = append(old, k.slot)
		}
	}
	if len(old) > 0 {
		if err := is.store.Drop(ctx, old); err != nil {
			return err
		}
		keys = slices.DeleteFunc(keys, func(k *key) bool { return !k.needed(now) })
	}
	jwks, err := keySet(keys, now)
	if err != nil {
		return err
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys, is.jwks = keys, jwks
	return nil
}

// add makes a key for the period [from, until) and keeps it, unless a key
// for a period starting at from is kept already. It returns every key kept.
func (is *Issuer) add(ctx context.Context, from, until time.Time) ([]*key, error) {
	k, err := newKey(from, until)
	if err != nil {
		return nil, err
	}
	record, err := k.record()
	if err != nil {
		return nil, err
	}
	kept, err := is.store.Add(ctx, k.slot, record)
	if err != nil {
		return nil, err
	}
	return parseKeys(kept)
}
