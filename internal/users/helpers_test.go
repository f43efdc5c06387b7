package users

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
	"wxlogin/internal/account"
	"wxlogin/internal/fakewechat"
)

// This file holds what the store's tests share: a clock that tests move,
// the stores they open, the files they write and damage, and the repair as
// wxlogin repair -drop makes it. The root's tests drive the same store
// through the server and the tools.

// discardLogger logs nothing.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// mockAppID is the app of mock mode, as wxlogin's own tests use it.
const mockAppID = "wxfa4e000000000000"

// testMeta is what the stores of tests record of their configuration:
// mock mode, as the servers the root's tests start are in, with its one app.
var testMeta = account.Meta{Mode: account.ModeMock, AppIDs: []string{mockAppID}}

// openTestStore opens a user store in dir, closing it when the test ends.
func openTestStore(t testing.TB, dir string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(dir, testMeta, now, discardLogger(), nil)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// benchOpenID is the openid of the ith user of the benchmarks: WeChat's
// length and alphabet, as the fake makes them.
func benchOpenID(i int) string { return fakewechat.OpenID("wxbench", strconv.Itoa(i)) }

// repairDrop repairs the store in dir as wxlogin repair -drop does
// (internal/tools, repairDataDir), but for keeping the damaged files aside, which is the
// tool's and tested with it: it writes what Salvage keeps in place of the
// damaged files. It returns what the tool says, less its counts: why the
// store does not check out, then each line corrected, each line dropped,
// and the notes, one a line, indented.
func repairDrop(dir string) (string, error) {
	var out strings.Builder
	if s, _, err := Inspect(dir); err == nil {
		s.Close()
		return fmt.Sprintf("%s checks out: nothing to repair\n", dir), nil
	} else {
		fmt.Fprintf(&out, "%s does not check out:\n  %v\n", dir, err)
	}
	r, err := Salvage(dir, time.Now())
	if err != nil {
		return out.String(), err
	}
	for _, c := range r.Corrected {
		fmt.Fprintf(&out, "  corrects %s\n", c)
	}
	for _, l := range r.Dropped {
		fmt.Fprintf(&out, "  drops %s\n", l)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&out, "  %s\n", n)
	}
	if err := r.Replace(dir); err != nil {
		return out.String(), err
	}
	if s, _, err := Inspect(dir); err != nil {
		return out.String(), fmt.Errorf("the repaired store does not check out: %w", err)
	} else {
		s.Close()
	}
	return out.String(), nil
}
