package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/durable"
	"wxlogin/internal/strictjson"
)

// This file carries the token store across a graceful restart: save writes
// the live tokens when wxlogin stops, and load reads them back at the next
// start. A kill -9 loses them, which costs each phone a silent wx.login.

// The file a graceful shutdown leaves tokens in, and the format its header
// names. It is JSON lines, written and read as a stream: as one document,
// a million tokens took far too long and too much memory to read
// (BENCHMARKS.md, RSS). Times are Unix nanoseconds, as the store keeps them.
//
//	{"format":"wxlogin-tokens","version":2,"saved_at":"…"}
//	{"user_id":1,"appid":"…","openid":"…","session_key":"…","stored_ns":…}    one per user with a live token, first
//	{"sha256":"…","user_id":1,"issued_ns":…,"last_used_ns":…}    one per live token
const (
	tokenFileName    = "tokens.json"
	tokenFileFormat  = "wxlogin-tokens"
	tokenFileVersion = 2
)

// The lines of the token file. It holds token hashes, never tokens, but it
// does hold session keys: it is written 0600 and removed as soon as it has
// been read back.
type (
	tokenFileHeader struct {
		Format  string    `json:"format"`
		Version int       `json:"version"`
		SavedAt time.Time `json:"saved_at"`
	}
	savedSessionKey struct {
		UserID     int64  `json:"user_id"`
		AppID      string `json:"appid"`  // checked against the user store, so that
		OpenID     string `json:"openid"` // a token never speaks for another user
		SessionKey string `json:"session_key"`
		StoredAt   int64  `json:"stored_ns"`
	}
	savedToken struct {
		SHA256     string `json:"sha256"`
		UserID     int64  `json:"user_id"`
		IssuedAt   int64  `json:"issued_ns"`
		LastUsedAt int64  `json:"last_used_ns"`
	}
)

// savedTokenPrefix starts every token line; a session key line starts with "user_id".
var savedTokenPrefix = []byte(`{"sha256":`)

// save writes the live tokens, and the session keys they use, to path
// atomically, and reports how many tokens it wrote. It runs after the
// server has stopped, so no token is issued while it writes.
func (s *tokenStore) save(path string) (int, error) {
	now, wallNow := s.monotonic(), s.clock.Now()
	// The file holds wall times, as Unix nanoseconds, for the next process,
	// whose monotonic clock starts elsewhere.
	toWall := func(at int64) int64 { return at - now + wallNow.UnixNano() }
	needed := map[*loginState]bool{}
	s.tokens.Range(func(_, v any) bool {
		if e := v.(*tokenEntry); s.alive(e, now) {
			needed[e.user] = true
		}
		return true
	})
	saved := 0
	err := durable.WriteFile(path, func(w *os.File) error {
		// A write error sticks in bw, and Flush returns it.
		bw := bufio.NewWriterSize(w, 1<<20)
		header, _ := json.Marshal(tokenFileHeader{Format: tokenFileFormat, Version: tokenFileVersion, SavedAt: wallNow.UTC()}) // Cannot fail: plain data.
		bw.Write(append(header, '\n'))
		var line []byte
		for state := range needed {
			k := state.key.Load()
			bw.Write(appendSavedSessionKey(line[:0], savedSessionKey{
				UserID: state.who.UserID, AppID: state.who.AppID, OpenID: state.who.OpenID, SessionKey: k.key, StoredAt: toWall(k.storedAt),
			}))
		}
		s.tokens.Range(func(k, v any) bool {
			if e, h := v.(*tokenEntry), k.(account.TokenHash); s.alive(e, now) {
				line = appendSavedToken(line[:0], savedToken{
					SHA256: base64.RawURLEncoding.EncodeToString(h[:]), UserID: e.user.who.UserID,
					IssuedAt: toWall(e.issuedAt), LastUsedAt: toWall(e.lastUsed.Load()),
				})
				bw.Write(line)
				saved++
			}
			return true
		})
		return bw.Flush()
	})
	if err != nil {
		return 0, fmt.Errorf("save tokens: %w", err)
	}
	return saved, nil
}

// load reads tokens saved by save, keeps those still alive, and removes the
// file. Removing it matters: a token revoked after this start must not come
// back from the old file after a later crash. userOf gives each token's
// identity from the user store; a token whose user it does not know, or
// knows under another appid or openid, is dropped.
//
// A file it cannot read whole (an older wxlogin's, one cut short, garbage)
// is dropped with every login in it, and removed, and load returns an
// error that wraps errTokenFileDropped, for the log: it names the file and
// the line and says what is wrong, never quoting the file, which holds
// session keys.
func (s *tokenStore) load(path string, userOf func(id int64) (account.Identity, bool)) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load tokens: %w", err)
	}
	loaded, readErr := s.readTokenFile(bufio.NewReaderSize(f, 1<<16), path, userOf)
	f.Close()
	if readErr != nil {
		// What was read before the fault goes too: the file is dropped
		// whole, as the README promises, not in part.
		s.tokens.Clear()
		s.mu.Lock()
		s.users = map[int64]*loginState{}
		s.mu.Unlock()
		loaded, readErr = 0, fmt.Errorf("%w: %w", readErr, errTokenFileDropped)
	}
	s.sweep() // Drops the session keys of users whose tokens all expired while we were down.
	if err := os.Remove(path); err != nil {
		return 0, fmt.Errorf("load tokens: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return 0, fmt.Errorf("load tokens: %w", err)
	}
	return loaded, readErr
}

// errTokenFileDropped is what load wraps when it could not read the token
// file whole, and dropped and removed it. Tokens are login state, not user
// data: a crash loses them too, and each phone simply logs in again, where
// refusing to start would keep everyone out until someone deleted the file.
var errTokenFileDropped = errors.New("its logins are dropped, and users log in again")

// errOldTokenFile is a token file written by a wxlogin before version 2.
var errOldTokenFile = errors.New("written by an older wxlogin")

// fromSaved puts the times of a file saved at savedAt (Unix nanoseconds,
// as the saving process's clock read) on this process's monotonic clock,
// where it is now now, and the wall clock reads wallNow. A time's age at
// the save is the saving process's own measure, kept exact; the time the
// server was down is the wall clocks' difference, taken as none if
// negative: so a clock that ran ahead or behind at either end keeps no token
// past its age. Both are capped beyond the longest lifetime, where a token
// is dead anyway, so that no value in the file can overflow.
func (s *tokenStore) fromSaved(now, wallNow, savedAt int64) func(at int64) int64 {
	limit := int64(max(s.ttl, s.maxAge)) + 1
	down := min(max(0, wallNow-savedAt), limit)
	return func(at int64) int64 {
		age := int64(0)
		switch {
		case at <= savedAt-limit: // written so as not to overflow, whatever at is
			age = limit
		case at < savedAt:
			age = savedAt - at
		}
		return now - age - down
	}
}

// readTokenFile puts the live tokens read from r in s and counts them. Its
// errors name the line and say what is wrong with it without quoting it.
func (s *tokenStore) readTokenFile(r *bufio.Reader, path string, userOf func(id int64) (account.Identity, bool)) (int, error) {
	now, wallNow, loaded := s.monotonic(), s.clock.Now().UnixNano(), 0
	var fromWall func(at int64) int64 // set by the header
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, io.EOF) && len(line) == 0 && lineNo > 1:
			return loaded, nil
		case errors.Is(err, io.EOF) && len(line) == 0:
			return 0, fmt.Errorf("%s: empty, not a wxlogin token file", path)
		case errors.Is(err, io.EOF):
			return 0, fmt.Errorf("%s:%d: cut short: the line has no end", path, lineNo)
		case errors.Is(err, bufio.ErrBufferFull):
			return 0, fmt.Errorf("%s:%d: not a wxlogin token file: a line longer than %d bytes", path, lineNo, r.Size())
		case err != nil:
			return 0, fmt.Errorf("%s:%d: %w", path, lineNo, err)
		}
		switch {
		case lineNo == 1:
			if string(line) == "{\n" {
				// Version 1 was one indented JSON document, its format second.
				if next, _ := r.ReadSlice('\n'); string(next) == ` "format": "wxlogin-tokens",`+"\n" {
					return 0, fmt.Errorf("%s: %w", path, errOldTokenFile)
				}
			}
			var h tokenFileHeader
			if err := strictjson.Decode(line, &h); err != nil {
				return 0, fmt.Errorf("%s:1: not a wxlogin token file: %s", path, jsonFault(err))
			}
			if h.Format != tokenFileFormat || h.Version != tokenFileVersion {
				return 0, fmt.Errorf("%s:1: not a wxlogin token file of version %d: its header names another format or version", path, tokenFileVersion)
			}
			if y := h.SavedAt.Year(); y < 2000 || y > 2200 {
				return 0, fmt.Errorf("%s:1: its saved_at is not a time a token file was saved", path)
			}
			fromWall = s.fromSaved(now, wallNow, h.SavedAt.UnixNano())
		case bytes.HasPrefix(line, savedTokenPrefix):
			t, err := parseSavedToken(line)
			if err != nil {
				return 0, fmt.Errorf("%s:%d: not a token line: %s", path, lineNo, jsonFault(err))
			}
			raw, err := base64.RawURLEncoding.DecodeString(t.SHA256)
			if err != nil || len(raw) != sha256.Size {
				return 0, fmt.Errorf("%s:%d: its token hash is not a base64url SHA-256", path, lineNo)
			}
			e := &tokenEntry{user: s.loginStateOf(t.UserID), issuedAt: fromWall(t.IssuedAt)}
			e.lastUsed.Store(fromWall(t.LastUsedAt))
			if e.user != nil && s.alive(e, now) {
				s.tokens.Store(account.TokenHash(raw), e)
				loaded++
			}
		default:
			k, err := parseSavedSessionKey(line)
			if err != nil {
				return 0, fmt.Errorf("%s:%d: not a session key line: %s", path, lineNo, jsonFault(err))
			}
			if who, ok := userOf(k.UserID); ok && who.AppID == k.AppID && who.OpenID == k.OpenID {
				s.setSessionKey(who, &sessionKey{key: k.SessionKey, storedAt: fromWall(k.StoredAt)})
			}
		}
	}
}

// jsonFault says what encoding/json found wrong with a line of the token
// file, without the text it quotes: the line may hold a session key, and
// the error goes to the log.
func jsonFault(err error) string {
	var syntax *json.SyntaxError
	var wrongType *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("not JSON at byte %d", syntax.Offset)
	case errors.As(err, &wrongType):
		return fmt.Sprintf("a value of the wrong type for %s", wrongType.Field)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "its JSON is cut short"
	case errors.Is(err, strictjson.ErrTrailingData):
		return "data after its JSON value"
	default:
		return "a member or value wxlogin does not write"
	}
}
