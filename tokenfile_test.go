package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTokenSaveAndLoad(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), tokenFileName)
	before := newTokenStore(time.Hour, 24*time.Hour, clock.clock())
	live := before.issue(alice, "alice-key")
	dying := before.issue(bob, "bob-key")
	clock.Advance(50 * time.Minute)
	before.lookup(live) // alice's token was used recently; bob's was not

	if n, err := before.save(path); err != nil || n != 2 {
		t.Fatalf("save = %d, %v; want 2, nil", n, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(live)) || bytes.Contains(data, []byte(dying)) {
		t.Error("the token file holds a token, not just its hash")
	}
	assertPrivate(t, path)

	clock.Advance(20 * time.Minute) // down for a while: bob's token expires meanwhile
	after := newTokenStore(time.Hour, 24*time.Hour, clock.clock())
	if n, err := after.load(path, knownUsers); err != nil || n != 1 {
		t.Fatalf("load = %d, %v; want 1, nil", n, err)
	}
	who, ok := after.lookup(live)
	if !ok || who.identity != alice || who.SessionKey != "alice-key" {
		t.Errorf("reloaded lookup = %+v, %v; want alice with alice-key", who, ok)
	}
	if _, ok := after.lookup(dying); ok {
		t.Error("a token that expired while the server was down was reloaded")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("token file still there after load (stat err %v): a later crash would revive revoked tokens", err)
	}
	if n, err := newTokenStore(time.Hour, time.Hour, clock.clock()).load(path, knownUsers); err != nil || n != 0 {
		t.Errorf("load with no file = %d, %v; want 0, nil", n, err)
	}
}

func TestTokenLoadRejectsForeignFile(t *testing.T) {
	const header = `{"format":"wxlogin-tokens","version":2,"saved_at":"2026-01-01T00:00:00Z"}` + "\n"
	tests := []struct {
		name, content string
		line          int // the line the error must name
	}{
		{"not json", "hello\nworld\n", 1},
		{"other format", `{"format":"something-else","version":2}` + "\n", 1},
		{"a newer version", `{"format":"wxlogin-tokens","version":3}` + "\n", 1},
		{"bad hash", header + `{"sha256":"xyz","user_id":1,"issued_ns":1,"last_used_ns":1}` + "\n", 2},
		{"unknown field", header + `{"user_id":1,"appid":"wxapp","openid":"o-alice","session_key":"k","stored_ns":1,"admin":true}` + "\n", 2},
		{"syntax error", header + `{"user_id":1,"appid":"wxapp","openid":"o-alice","session_key":"k","stored_ns":1}` + "\n" + `{"sha256":,}` + "\n", 3},
		{"cut short", header + `{"user_id":1,"session_key":"k"`, 2},
		{"an indented document, not ours", "{\n \"format\": \"other\",\n}\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tokenFileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := newTokenStore(time.Hour, time.Hour, systemClock()).load(path, knownUsers)
			if want := fmt.Sprintf("%s:%d:", path, tt.line); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("load = %v; want an error naming %s", err, want)
			}
			if _, statErr := os.Stat(path); statErr != nil {
				t.Errorf("a file that failed to load was removed (%v); it must be left for the operator", statErr)
			}
		})
	}
}

// versionOneTokenFile is an empty token file as wxlogin before version 2
// wrote it: one indented JSON document.
const versionOneTokenFile = "{\n \"format\": \"wxlogin-tokens\",\n \"version\": 1,\n \"tokens\": [],\n \"session_keys\": []\n}\n"

// A token file written by a wxlogin before version 2 (one JSON document) is
// dropped with its file: tokens are login state, lost in a crash too, and
// each phone logs in again. Refusing to start would be worse.
func TestTokenLoadDropsTheOldFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), tokenFileName)
	if err := os.WriteFile(path, []byte(versionOneTokenFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := newTokenStore(time.Hour, time.Hour, systemClock()).load(path, knownUsers); !errors.Is(err, errOldTokenFile) || n != 0 {
		t.Fatalf("load of a version 1 file = %d, %v; want 0, errOldTokenFile", n, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the version 1 file is still there (stat err %v)", err)
	}
}

// A token whose user the user store does not know, or knows as someone
// else, as when a token file is put next to other users, is not reloaded:
// a token must never speak for another user.
func TestTokenLoadDropsUnknownUsers(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), tokenFileName)
	before := newTokenStore(time.Hour, time.Hour, clock.clock())
	stranger := before.issue(identity{AppID: "wxapp", OpenID: "o-stranger", UserID: 3}, "key")
	impostor := before.issue(identity{AppID: "wxapp", OpenID: "o-mallory", UserID: bob.UserID}, "key")
	known := before.issue(alice, "alice-key")
	if _, err := before.save(path); err != nil {
		t.Fatal(err)
	}
	after := newTokenStore(time.Hour, time.Hour, clock.clock())
	if n, err := after.load(path, knownUsers); err != nil || n != 1 {
		t.Fatalf("load = %d, %v; want 1, nil", n, err)
	}
	if _, ok := after.lookup(stranger); ok {
		t.Error("a token of a user the store does not know was reloaded")
	}
	if who, ok := after.lookup(impostor); ok {
		t.Errorf("a token saved for o-mallory was reloaded as %+v", who.identity)
	}
	if who, ok := after.lookup(known); !ok || who.identity != alice {
		t.Errorf("lookup of alice's token = %+v, %v; want alice", who, ok)
	}
}
