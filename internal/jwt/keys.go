package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Store keeps the signing keys, each as a record under its slot (the
// start of its period, in Unix seconds). The Issuer declares it; File and
// redisstore.JWTKeys are the two kept.
type Store interface {
	// Keys is every record kept, by slot.
	Keys(ctx context.Context) (map[string][]byte, error)
	// Add keeps record under slot unless a record is kept there already,
	// and returns every record kept: the first key made for a slot wins.
	Add(ctx context.Context, slot string, record []byte) (map[string][]byte, error)
	// Drop removes the records of slots.
	Drop(ctx context.Context, slots []string) error
}

// key is one signing key and the period it signs in, [from, until).
type key struct {
	slot        string
	from, until time.Time
	priv        *ecdsa.PrivateKey
	kid         string // the public key's JWK thumbprint (RFC 7638)
	x, y        string // the public point, as the JWK writes it
	header      []byte // the JOSE header of the tokens it signs, encoded
}

// covers is whether t is in k's period.
func (k *key) covers(t time.Time) bool { return !t.Before(k.from) && t.Before(k.until) }

// needed is whether k may still verify a token at now: until MaxTTL after
// its period ends, the longest a token it signed can live.
func (k *key) needed(now time.Time) bool { return !now.After(k.until.Add(MaxTTL)) }

// newKey is a new P-256 key for the period [from, until).
func newKey(from, until time.Time) (*key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return withPeriod(priv, from, until)
}

// withPeriod is priv as the key of the period [from, until).
func withPeriod(priv *ecdsa.PrivateKey, from, until time.Time) (*key, error) {
	point, err := priv.PublicKey.Bytes() // 0x04, X, Y (SEC 1, uncompressed)
	if err != nil {
		return nil, err
	}
	k := &key{
		slot: strconv.FormatInt(from.Unix(), 10), from: from, until: until, priv: priv,
		x: base64.RawURLEncoding.EncodeToString(point[1:33]), y: base64.RawURLEncoding.EncodeToString(point[33:]),
	}
	// The thumbprint hashes the required members in lexical order, with no
	// whitespace (RFC 7638 §3.2).
	thumb := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + k.x + `","y":"` + k.y + `"}`))
	k.kid = base64.RawURLEncoding.EncodeToString(thumb[:])
	k.header = base64.RawURLEncoding.AppendEncode(nil, []byte(`{"alg":"ES256","kid":"`+k.kid+`","typ":"at+jwt"}`))
	return k, nil
}

// record is how a key is kept: its private JWK (RFC 7518 §6.2), with the
// public point beside the private scalar so that damage to either is
// seen, and its period.
type record struct {
	Kty   string `json:"kty"`
	Crv   string `json:"crv"`
	X     string `json:"x"`
	Y     string `json:"y"`
	D     string `json:"d"`
	From  int64  `json:"from"`
	Until int64  `json:"until"`
}

// record is k as it is kept.
func (k *key) record() ([]byte, error) {
	d, err := k.priv.Bytes()
	if err != nil {
		return nil, err
	}
	return json.Marshal(record{Kty: "EC", Crv: "P-256", X: k.x, Y: k.y, D: base64.RawURLEncoding.EncodeToString(d),
		From: k.from.Unix(), Until: k.until.Unix()})
}

// ErrDamaged is a kept key that cannot be what was written: its record is
// not a key, or its private and public halves differ. Its errors name the
// slot, never the key.
var ErrDamaged = errors.New("damaged signing key")

// parseKey reads the key kept under slot.
func parseKey(slot string, data []byte) (*key, error) {
	damaged := func(why string) error { return fmt.Errorf("jwt signing key %s: %w: %s", slot, ErrDamaged, why) }
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, damaged("not a JSON record")
	}
	if r.Kty != "EC" || r.Crv != "P-256" {
		return nil, damaged("not a P-256 key")
	}
	if strconv.FormatInt(r.From, 10) != slot || r.Until <= r.From {
		return nil, damaged("its period is not its slot's")
	}
	d, err := base64.RawURLEncoding.DecodeString(r.D)
	if err != nil {
		return nil, damaged("its private scalar is not base64url")
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		return nil, damaged("its private scalar is not a P-256 key")
	}
	k, err := withPeriod(priv, time.Unix(r.From, 0), time.Unix(r.Until, 0))
	if err != nil {
		return nil, err
	}
	if k.x != r.X || k.y != r.Y {
		return nil, damaged("its public point is not its private scalar's")
	}
	return k, nil
}

// parseKeys reads every key kept, ordered by the start of its period.
func parseKeys(kept map[string][]byte) ([]*key, error) {
	keys := make([]*key, 0, len(kept))
	for slot, data := range kept {
		k, err := parseKey(slot, data)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b *key) int { return a.from.Compare(b.from) })
	return keys, nil
}

// covering is the key of keys that signs at t, or nil: of two whose
// periods hold t, the later started.
func covering(keys []*key, t time.Time) *key {
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].covers(t) {
			return keys[i]
		}
	}
	return nil
}

// latestFrom is the key of keys whose period started last by t, or nil.
func latestFrom(keys []*key, t time.Time) *key {
	for i := len(keys) - 1; i >= 0; i-- {
		if !keys[i].from.After(t) {
			return keys[i]
		}
	}
	return nil
}

// keySet is the JWKS of keys: those that may have signed a token not yet
// expired, the current key and the next. The current key, at now, comes
// first.
func keySet(keys []*key, now time.Time) ([]byte, error) {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		Kid string `json:"kid"`
		Use string `json:"use"`
		Alg string `json:"alg"`
		X   string `json:"x"`
		Y   string `json:"y"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	current := covering(keys, now)
	if current != nil {
		keys = append([]*key{current}, slices.DeleteFunc(slices.Clone(keys), func(k *key) bool { return k == current })...)
	}
	for _, k := range keys {
		set.Keys = append(set.Keys, jwk{Kty: "EC", Crv: "P-256", Kid: k.kid, Use: "sig", Alg: "ES256", X: k.x, Y: k.y})
	}
	return json.Marshal(set)
}
