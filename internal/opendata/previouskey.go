package opendata

import (
	"errors"
	"time"
	"wxlogin/internal/account"
)

// This file lets user data made with the session_key a login has just
// replaced still verify, for a short while. Each wx.login may give the user
// a new session_key at WeChat, and data the user fetched a moment before (a
// tap racing a launch login) is signed and encrypted with the key before
// it (WECHAT.md §2). So the token store keeps that key for
// PreviousKeyWindow after the login that replaced it, and data that fails
// with the current key but verifies with that one is accepted, if its
// watermark says it was fetched before the replacement, and not long
// before. Anything else that fails is status 5, as before.

// PreviousKeyWindow is how long after a login replaced a session_key data
// made with the replaced key is accepted, and how long before the
// replacement that data may have been fetched.
const PreviousKeyWindow = 2 * time.Minute

// WatermarkSkew is how far WeChat's clock, which stamps the watermark, may
// run ahead of wxlogin's.
const WatermarkSkew = 30 * time.Second

// verifiedWithKeys runs verify with the caller's session_key and, if that
// fails a data check and the caller's previous key is still in its window,
// with that one. verify returns what it read and when the data was fetched
// (its watermark's timestamp, Unix seconds; 0 for data that has none, such
// as signed rawData alone, which the window alone bounds). The current
// key's failure is the one reported.
func verifiedWithKeys[T any](who account.Caller, verify func(key string) (T, int64, error)) (T, error) {
	v, _, err := verify(who.SessionKey)
	var dce *CheckError
	if err == nil || !errors.As(err, &dce) || who.PreviousKey == "" {
		return v, err
	}
	old, fetched, oldErr := verify(who.PreviousKey)
	if oldErr != nil {
		return v, err
	}
	if fetched != 0 {
		at := time.Unix(fetched, 0)
		if at.After(who.ReplacedAt.Add(WatermarkSkew)) || at.Before(who.ReplacedAt.Add(-PreviousKeyWindow)) {
			return v, err
		}
	}
	return old, nil
}

// DecryptFor decrypts encryptedData with the caller's session_key, or the
// one a login has just replaced, and reads what it decrypts to with read.
func DecryptFor[T any](who account.Caller, encryptedData, iv string, read func(plain []byte) (T, error)) (T, error) {
	return verifiedWithKeys(who, func(key string) (T, int64, error) {
		plain, err := Decrypt(key, encryptedData, iv)
		if err != nil {
			var zero T
			return zero, 0, err
		}
		v, err := read(plain)
		return v, watermarkTimestamp(plain), err
	})
}
