package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"wxlogin/internal/testkit"
)

// TestConformSelfPassesEveryCheck runs `wxlogin conform -self`: the whole
// catalogue against a wxlogin it starts, which passes every check, none
// skipped (docs/conform.md).
func TestConformSelfPassesEveryCheck(t *testing.T) {
	report := filepath.Join(t.TempDir(), "verdict.json")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"wxlogin", "conform", "-self", "-json", report}, func(string) string { return "" }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("conform -self: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var verdict struct {
		Checks []struct {
			ID, Result string
		} `json:"checks"`
	}
	if err := json.Unmarshal(b, &verdict); err != nil {
		t.Fatal(err)
	}
	if len(verdict.Checks) < 38 {
		t.Errorf("%d checks ran, want the whole catalogue", len(verdict.Checks))
	}
	for _, c := range verdict.Checks {
		if c.Result != "PASS" {
			t.Errorf("%s: %s\n%s", c.ID, c.Result, stdout.String())
		}
	}
}

// TestConformExpressRecipe runs docs/conform.md's Express recipe as it is,
// but for its ports and the built binary's path: the backend, its
// profile and its expected failures, judged by conform, with the verdict
// the doc tells.
func TestConformExpressRecipe(t *testing.T) {
	needTool(t, "node", "nodejs")
	modules, err := filepath.Abs("tools/conform/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "express")); err != nil {
		testkit.SkipMissingTool(t, "Express is not installed: (cd tools/conform && npm ci)")
	}
	section := docSection(t, "docs/conform.md", "## A recipe: an Express backend")
	dir := t.TempDir()
	fakePort, backendPort := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	ports := strings.NewReplacer("127.0.0.1:9440", "127.0.0.1:"+fakePort, "127.0.0.1:3000", "127.0.0.1:"+backendPort, "PORT || 3000", "PORT || "+backendPort)
	testkit.PutFiles(t, dir, map[string][]byte{
		"server.js":            []byte(ports.Replace(codeBlocks(t, section, "js")[0])),
		"express.json":         []byte(ports.Replace(codeBlocks(t, section, "json")[0])),
		"express-expected.txt": []byte(codeBlocks(t, section, "text")[0]),
	})
	binary := filepath.Join(t.TempDir(), "wxlogin")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	script := strings.ReplaceAll(ports.Replace(codeBlocks(t, section, "sh")[0]), "wxlogin conform", binary+" conform")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"+script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the recipe failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"24 PASS, 2 FAIL, 1 WARN, 0 INFO, 11 SKIPPED",
		"opendata.foreign-watermark    FAIL (expected)",
		"opendata.other-openid         FAIL (expected)",
		"login.double-tap-one-call     WARN",
		"login.concurrent-first        PASS",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the verdict has no %q:\n%s", want, out)
		}
	}
}
