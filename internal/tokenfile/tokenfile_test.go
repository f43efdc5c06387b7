package tokenfile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"wxlogin/internal/account"
	"wxlogin/internal/strictjson"
)

// The token store's save and load, through this file, are tested with the
// token store (the root's store_test.go): what a load keeps, and what it
// drops with the file.

// FuzzTokenFileLines checks the token file's line readers: they never
// panic, read every line as encoding/json does, and read back what the
// writers write.
func FuzzTokenFileLines(f *testing.F) {
	f.Add([]byte(`{"user_id":1,"appid":"wxapp","openid":"o-1","session_key":"tiihtNczf5v6AKRyjwEUhQ==","stored_ns":1795000000000000000}` + "\n"))
	f.Add([]byte(`{"sha256":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU","user_id":1,"issued_ns":1795000000000000000,"last_used_ns":1795000000000000001}` + "\n"))
	f.Add([]byte(`{"user_id":1,"appid":"wxapp","openid":"o\"1","session_key":"a\"b","stored_ns":-1}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		checkTokenFileLine(t, "session key", line, parseSessionKey, appendSessionKey)
		checkTokenFileLine(t, "token", line, parseTokenLine, appendTokenLine)
	})
}

// checkTokenFileLine checks one kind of token-file line: if parse accepts
// line, encoding/json reads the same from it, and what appendLine writes of
// it reads back the same.
func checkTokenFileLine[T comparable](t *testing.T, what string, line []byte, parse func([]byte) (T, error), appendLine func([]byte, T) []byte) {
	t.Helper()
	got, err := parse(line)
	if err != nil {
		return
	}
	var want T
	if jsonErr := strictjson.Decode(line, &want); jsonErr != nil || got != want {
		t.Fatalf("%s line %q reads as %+v; encoding/json reads %+v, %v", what, line, got, want, jsonErr)
	}
	if again, err := parse(appendLine(nil, got)); err != nil || again != got {
		t.Fatalf("%s %+v reads back as %+v, %v", what, got, again, err)
	}
}

// The token file's writers write what encoding/json writes.
func TestTokenFileLinesAreWhatEncodingJSONWrites(t *testing.T) {
	for _, v := range []any{
		SessionKey{UserID: 7, AppID: "wxapp", OpenID: "o-7", SessionKey: "tiihtNczf5v6AKRyjwEUhQ==", StoredAt: 1_795_000_000_123_456_789},
		SessionKey{UserID: 8, AppID: "wx<app>", OpenID: "o\u2028", SessionKey: "<\"odd\">\n", StoredAt: -1},
		tokenLine{SHA256: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU", UserID: 7, IssuedAt: 1, LastUsedAt: 2},
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		switch v := v.(type) {
		case SessionKey:
			got = appendSessionKey(nil, v)
		case tokenLine:
			got = appendTokenLine(nil, v)
		}
		if string(got) != string(want)+"\n" {
			t.Errorf("wrote %s\nencoding/json writes %s", got, want)
		}
	}
}

// What Save writes, Read reads back: the time of the save, then every key
// and every token, in the order they were given.
func TestReadGivesBackWhatSaveWrote(t *testing.T) {
	savedAt := time.Date(2026, 11, 24, 10, 0, 0, 123, time.FixedZone("CST", 8*3600))
	keys := []SessionKey{
		{UserID: 1, AppID: "wxapp", OpenID: "o-1", SessionKey: "tiihtNczf5v6AKRyjwEUhQ==", StoredAt: 1},
		{UserID: 2, AppID: "wx<app>", OpenID: "o\u2028", SessionKey: "<\"odd\">\n", StoredAt: -1},
	}
	tokens := []Token{{Hash: account.HashToken("a"), UserID: 1, IssuedAt: 2, LastUsedAt: 3}, {Hash: account.HashToken("b"), UserID: 2}}
	path := filepath.Join(t.TempDir(), Name)
	if err := Save(path, savedAt, slices.Values(keys), slices.Values(tokens)); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the token file: %v, %v; want mode 0600", info, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var gotAt time.Time
	var gotKeys []SessionKey
	var gotTokens []Token
	err = Read(f, path, func(at time.Time) { gotAt = at }, func(k SessionKey) { gotKeys = append(gotKeys, k) }, func(t Token) { gotTokens = append(gotTokens, t) })
	if err != nil || !gotAt.Equal(savedAt) || !slices.Equal(gotKeys, keys) || !slices.Equal(gotTokens, tokens) {
		t.Errorf("Read = %v: saved at %v, keys %+v, tokens %+v; want %v, %+v, %+v", err, gotAt, gotKeys, gotTokens, savedAt, keys, tokens)
	}
}
