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
	if len(verdict.Checks) < 39 {
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
	out := runRecipe(t, "## A recipe: an Express backend", map[string]string{
		"server.js": "js", "express.json": "json", "express-expected.txt": "text",
	}, nil, "NODE_PATH="+modules)
	verdictHas(t, out,
		"24 PASS, 2 FAIL, 1 WARN, 0 INFO, 12 SKIPPED",
		"opendata.foreign-watermark    FAIL (expected)",
		"opendata.other-openid         FAIL (expected)",
		"login.double-tap-one-call     WARN",
		"login.concurrent-first        PASS",
	)
}

// TestConformDjangoRecipe runs docs/conform.md's Django recipe as it is,
// but for its ports, the built binary's path and Debian's python3 (which
// has Django) ahead on the PATH, with the verdict the doc tells.
func TestConformDjangoRecipe(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import django").Run() != nil {
		missingTool(t, "Django", "python3-django")
	}
	out := runRecipe(t, "## A recipe: Django", map[string]string{"server.py": "python", "django.json": "json"}, nil,
		"PATH=/usr/bin:"+os.Getenv("PATH"))
	verdictHas(t, out,
		"19 PASS, 0 FAIL, 2 WARN, 0 INFO, 18 SKIPPED",
		"login.concurrent-first        PASS",
		"login.risk-distinct           WARN",
		"session.delete                PASS",
	)
}

// TestConformGoRecipe runs docs/conform.md's Go recipe on
// silenceper/wechat as it is, but for its ports and the built binary's
// path, in the module tools/conform/gowechat pins, with the verdict the
// doc tells.
func TestConformGoRecipe(t *testing.T) {
	module, err := filepath.Abs("tools/conform/gowechat")
	if err != nil {
		t.Fatal(err)
	}
	out := runRecipe(t, "## A recipe: Go on silenceper/wechat", map[string]string{
		"main.go": "go", "silenceper.json": "json", "silenceper-expected.txt": "text",
		"go.mod": filepath.Join(module, "go.mod"), "go.sum": filepath.Join(module, "go.sum"),
	}, nil)
	verdictHas(t, out,
		"20 PASS, 4 FAIL, 2 WARN, 1 INFO, 12 SKIPPED",
		"login.wechat-hang             FAIL (expected)",
		"phone.other-users-code        FAIL (expected)",
		"hygiene.access-token-refetch  FAIL (expected)",
		"phone.country-code-number     INFO",
	)
}

// runRecipe runs the shell block of a recipe section of docs/conform.md in
// a scratch folder holding files: each the section's one block of a
// language, or a file copied whole when given by its path. The recipe's
// ports become free ones, and "wxlogin conform" a binary built here; change,
// if not nil, changes the blocks first. It returns what the recipe
// printed, failing t if it failed.
func runRecipe(t *testing.T, heading string, files map[string]string, change *strings.Replacer, env ...string) string {
	t.Helper()
	section := docSection(t, "docs/conform.md", heading)
	if change != nil {
		section = change.Replace(section)
	}
	fakePort, backendPort := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	ports := strings.NewReplacer("127.0.0.1:9440", "127.0.0.1:"+fakePort,
		"127.0.0.1:3000", "127.0.0.1:"+backendPort, "PORT || 3000", "PORT || "+backendPort,
		"127.0.0.1:3001", "127.0.0.1:"+backendPort, "PORT=3001", "PORT="+backendPort,
		"127.0.0.1:8000", "127.0.0.1:"+backendPort, "'PORT', '8000'", "'PORT', '"+backendPort+"'")
	dir := t.TempDir()
	contents := map[string][]byte{}
	for name, from := range files {
		if filepath.IsAbs(from) {
			b, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			contents[name] = b
			continue
		}
		blocks := codeBlocks(t, section, from)
		if len(blocks) != 1 {
			t.Fatalf("%s has %d %s blocks; want one, for %s", heading, len(blocks), from, name)
		}
		contents[name] = []byte(ports.Replace(blocks[0]))
	}
	testkit.PutFiles(t, dir, contents)
	binary := filepath.Join(t.TempDir(), "wxlogin")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	script := strings.ReplaceAll(ports.Replace(codeBlocks(t, section, "sh")[0]), "wxlogin conform", binary+" conform")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"+script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the recipe failed: %v\n%s", err, out)
	}
	return string(out)
}

// verdictHas fails t unless a recipe's output holds every one of want.
func verdictHas(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("the verdict has no %q:\n%s", w, out)
		}
	}
}
