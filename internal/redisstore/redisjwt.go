package redisstore

import (
	"context"
	"wxlogin/internal/redis"
)

// This file keeps the signing keys of -jwt (internal/jwt) in Redis, so
// that every wxlogin on it signs with the same key and publishes the same
// key set. They are the fields of one hash, wx:jwt:keys, each a key's
// record under its slot (the start of its period). A key is added with
// HSETNX: of two instances that make a period's key at once, the first
// kept is the one both sign with. The hash holds private keys: whoever
// can read Redis can read them, as they can read session keys.

// jwtKeysKey is the hash of the signing keys.
const jwtKeysKey = "wx:jwt:keys"

// JWTKeys is the JWT signing keys in Redis, shared by the instances on it
// (a jwt.Store).
type JWTKeys struct{ rc *redis.Client }

// NewJWTKeys keeps the signing keys on rc.
func NewJWTKeys(rc *redis.Client) *JWTKeys { return &JWTKeys{rc: rc} }

// Keys is every record in the hash.
func (k *JWTKeys) Keys(ctx context.Context) (map[string][]byte, error) {
	reply, err := k.rc.Do(ctx, "HGETALL", jwtKeysKey)
	if err != nil {
		return nil, unavailable(err)
	}
	return jwtRecords(reply), nil
}

// Add sets record under slot unless the hash has it (HSETNX), and reads
// the hash back in the same pipeline.
func (k *JWTKeys) Add(ctx context.Context, slot string, record []byte) (map[string][]byte, error) {
	replies, err := k.rc.Pipeline(ctx, [][]string{{"HSETNX", jwtKeysKey, slot, string(record)}, {"HGETALL", jwtKeysKey}})
	if err == nil {
		err = firstError(replies)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return jwtRecords(replies[1]), nil
}

// Drop removes the records of slots from the hash.
func (k *JWTKeys) Drop(ctx context.Context, slots []string) error {
	_, err := k.rc.Do(ctx, append([]string{"HDEL", jwtKeysKey}, slots...)...)
	return unavailable(err)
}

// jwtRecords is an HGETALL reply of the keys' hash, by slot.
func jwtRecords(reply any) map[string][]byte {
	pairs, _ := reply.([]any)
	kept := make(map[string][]byte, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		slot, _ := pairs[i].(string)
		record, _ := pairs[i+1].(string)
		kept[slot] = []byte(record)
	}
	return kept
}
