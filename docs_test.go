package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"wxlogin/internal/config"
	"wxlogin/internal/testkit"
)

// Every test the README and docs/ cite exists, so that a claim cannot
// outlive the test behind it; and the Security section, a table of claims,
// cites a test for each.
func TestSecuritySectionCitesRealTests(t *testing.T) {
	section := docSection(t, "docs/security.md", "# Security")
	testName := regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9]+)`")
	if n := len(testName.FindAllStringSubmatch(section, -1)); n < 20 {
		t.Fatalf("the Security section cites %d tests; want each claim backed by one", n)
	}
	var readme []byte
	docs, _ := filepath.Glob("docs/*.md")
	for _, path := range append([]string{"README.md"}, docs...) {
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		readme = append(readme, text...)
	}
	cited := testName.FindAllStringSubmatch(string(readme), -1)
	sources, _ := filepath.Glob("*_test.go")
	packaged, _ := filepath.Glob("internal/*/*_test.go")
	sources = append(sources, packaged...)
	var all []byte
	for _, f := range sources {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, data...)
	}
	for _, m := range cited {
		if !bytes.Contains(all, []byte("\nfunc "+m[1]+"(")) {
			t.Errorf("the README or docs/ cite %s, which is no test of wxlogin's", m[1])
		}
	}
}

// scripts/fuzz lets through a run that Go's own -fuzztime race ended
// (go.dev/issue/75804) and fails every other failed run, as the README says.
// The script runs in a tree of its own, with a stand-in go that answers as
// the real one does in each case.
func TestFuzzScriptTellsGosDeadlineRaceFromAFailure(t *testing.T) {
	script, err := os.ReadFile("scripts/fuzz")
	if err != nil {
		t.Fatal(err)
	}
	const fakeGo = `#!/bin/sh
if [ "$1" = "list" ]; then pwd; exit 0; fi
if [ "$2" = "-list" ]; then echo FuzzX; exit 0; fi
if [ -n "$WRITES" ]; then touch testdata/fuzz/FuzzX/new-input; fi
printf '%s' "$OUTPUT"
exit "$EXIT"
`
	const race = "fuzz: elapsed: 11s, execs: 33692 (0/sec), new interesting: 2 (total: 340)\n" +
		"--- FAIL: FuzzX (11.05s)\n    context deadline exceeded\nFAIL\nexit status 1\n"
	tests := []struct {
		name   string
		output string
		exit   int
		writes bool // the run saves an input under testdata/fuzz/FuzzX
		pass   bool
	}{
		{"a clean run", "ok  \twxlogin\t10.1s\n", 0, false, true},
		{"Go's race, nothing written", race, 1, false, true},
		{"Go's race message, an input written", race, 1, true, false},
		{"a failing input", "--- FAIL: FuzzX (1.00s)\n    x_test.go:5: boom\n    Failing input written to testdata/fuzz/FuzzX/abc\nFAIL\n", 1, true, false},
		{"the race message after a failure", "--- FAIL: FuzzX (1.00s)\n    x_test.go:5: boom\n--- FAIL: FuzzX (11.05s)\n    context deadline exceeded\n", 1, false, false},
		{"the race message before a failure", "--- FAIL: FuzzX (11.05s)\n    context deadline exceeded\n--- FAIL: FuzzX (0.00s)\n    x_test.go:5: boom\n", 1, false, false},
		{"a failure with no message", "--- FAIL: FuzzX (11.05s)\nFAIL\n", 1, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for path, content := range map[string]string{
				"scripts/fuzz": string(script), "bin/go": fakeGo, "testdata/fuzz/FuzzX/seed": "go test fuzz v1\n[]byte(\"\")\n",
			} {
				path = filepath.Join(dir, path)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("bash", filepath.Join(dir, "scripts", "fuzz"), "10s")
			cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"),
				"OUTPUT="+tt.output, "EXIT="+strconv.Itoa(tt.exit), "WRITES="+map[bool]string{true: "1"}[tt.writes])
			out, err := cmd.CombinedOutput()
			if passed := err == nil; passed != tt.pass {
				t.Errorf("scripts/fuzz passed = %v (%v); want %v. It printed:\n%s", passed, err, tt.pass, out)
			}
			if tt.pass && tt.exit != 0 && !strings.Contains(string(out), "go.dev/issue/75804") {
				t.Errorf("scripts/fuzz let Go's race through without naming it:\n%s", out)
			}
		})
	}
}

// readmeSection is the text of the README section with the given heading,
// up to the next section.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	return docSection(t, "README.md", "## "+heading)
}

// declaredNames is every name declared at the top of wxlogin's Go files,
// methods and tests included, and its files other than tests.
func declaredNames(t *testing.T) (names, files map[string]bool) {
	t.Helper()
	names, files = map[string]bool{}, map[string]bool{}
	sources, _ := filepath.Glob("*.go")
	packaged, _ := filepath.Glob("internal/*/*.go")
	fset := token.NewFileSet()
	for _, path := range append(sources, packaged...) {
		// A root file's names are bare (handleLogin), a method's also by its
		// type (fileUsers.Login); a package's are qualified, as its callers
		// write them (strictjson.Decode, journal.Journal.Append).
		qualify, dir := "", filepath.Dir(path)
		if dir != "." {
			qualify = filepath.Base(dir) + "."
			files[filepath.ToSlash(dir)] = true
		} else if !strings.HasSuffix(path, "_test.go") {
			files[path] = true
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				names[qualify+d.Name.Name] = true
				if d.Recv != nil {
					recv := d.Recv.List[0].Type
					if star, ok := recv.(*ast.StarExpr); ok {
						recv = star.X
					}
					switch index := recv.(type) {
					case *ast.IndexExpr:
						recv = index.X
					case *ast.IndexListExpr:
						recv = index.X
					}
					if id, ok := recv.(*ast.Ident); ok {
						names[qualify+id.Name+"."+d.Name.Name] = true
					}
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						names[qualify+s.Name.Name] = true
					case *ast.ValueSpec:
						for _, n := range s.Names {
							names[qualify+n.Name] = true
						}
					}
				}
			}
		}
	}
	return names, files
}

// The README's walk through one login names functions, types and files
// that exist, so that it cannot outlive a rename. A name in backticks with
// no space, slash or underscore is a Go name (protocol names, such as
// session_key, have underscores); one ending in .go is a file.
func TestReadTheCodeNamesRealFunctions(t *testing.T) {
	section := docSection(t, "docs/reading-the-code.md", "# Read the code")
	names, files := declaredNames(t)
	quoted := regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(section, -1)
	checked := 0
	for _, m := range quoted {
		name := m[1]
		switch {
		case strings.HasSuffix(name, ".go") || strings.HasPrefix(name, "internal/"):
			if !files[name] {
				t.Errorf("Read the code names %s, which is not a file or package of wxlogin", name)
			}
		case strings.ContainsAny(name, " /_") || !regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*){0,2}$`).MatchString(name):
		case !names[name]:
			t.Errorf("Read the code names %s, which wxlogin does not declare", name)
		default:
			checked++
		}
	}
	if checked < 25 {
		t.Errorf("Read the code names %d of wxlogin's functions and types; want the whole login, about 25", checked)
	}
}

// The tables of packages list every root file and package of wxlogin,
// and no other.
func TestFileTableListsEveryFile(t *testing.T) {
	section := docSection(t, "docs/reading-the-code.md", "## The packages")
	listed := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") { // a row of one of the tables, not a header
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		for _, m := range regexp.MustCompile("`([a-z]+\\.go|internal/[a-z]+)`").FindAllStringSubmatch(first, -1) {
			listed[m[1]] = true
		}
	}
	_, files := declaredNames(t)
	for f := range files {
		if !listed[f] {
			t.Errorf("docs/reading-the-code.md's tables do not list %s", f)
		}
	}
	for f := range listed {
		if !files[f] {
			t.Errorf("docs/reading-the-code.md's tables list %s, which does not exist", f)
		}
	}
}

// CI runs the README's test command exactly, so a newcomer's command is the
// one that is known to pass. The command is the first screen's second line.
func TestCIRunsTheREADMETestCommand(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(readme), "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	lines := strings.Split(strings.TrimSpace(block), "\n")
	if len(lines) != 2 {
		t.Fatalf("the README's first block has %d lines; want the server's command and the tests'", len(lines))
	}
	command, _, _ := strings.Cut(lines[1], "#")
	command = strings.TrimSpace(command)
	if !strings.Contains(command, "go test -race") {
		t.Fatalf("the README's second command %q is not the test command", command)
	}
	if !slices.Contains(strings.Split(string(ci), "\n"), command) {
		t.Errorf(".ci/run has no line %q, the README's test command", command)
	}
}

// The README's recipes run as pasted: the newcomer's curl blocks against
// a fresh server in mock mode, the -fake-only recipe as it is but for its
// ports, and the Node backend's snippet against -fake-only with the
// README's fixtures file.
func TestREADMERecipesRunAsPasted(t *testing.T) {
	needTool(t, "curl", "curl")
	bash := func(t *testing.T, dir, script string) string {
		t.Helper()
		// Servers the recipe started are stopped however it ends.
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"+script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the recipe failed: %v\n%s\n--- the recipe:\n%s", err, out, script)
		}
		return string(out)
	}
	t.Run("try it with curl", func(t *testing.T) {
		s := startServer(t, nil, "-data", t.TempDir())
		script := strings.Join(codeBlocks(t, readmeSection(t, "Try it with curl"), "sh"), "\n")
		out := bash(t, t.TempDir(), strings.ReplaceAll(script, "localhost:8080", strings.TrimPrefix(s.url, "http://")))
		for _, want := range []string{`"new_user":true`, `"status":4`, `"nickname":"爱丽丝"`, `"status":9`, `"pure_phone_number":"`, `"step_info_list":[`, `"valid":false`, `"status":5`} {
			if !strings.Contains(out, want) {
				t.Errorf("the recipe's output lacks %s:\n%s", want, out)
			}
		}
	})
	t.Run("the fake on its own", func(t *testing.T) {
		blocks := codeBlocks(t, docSection(t, "docs/fake.md", "### The fake WeChat on its own: `-fake-only`"), "sh")
		if len(blocks) != 1 {
			t.Fatalf("the -fake-only section has %d shell blocks; want the recipe alone", len(blocks))
		}
		fakePort, serverPort := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
		// Built in a scratch folder rather than the checkout.
		binary := filepath.Join(t.TempDir(), "wxlogin")
		script := strings.NewReplacer(":9000", ":"+fakePort, ":8081", ":"+serverPort, "go build -o wxlogin .", "go build -o "+binary+" .",
			"./wxlogin", binary).Replace(blocks[0])
		if out := bash(t, ".", script); !strings.Contains(out, `"new_user":true`) {
			t.Errorf("the -fake-only recipe logged nobody in:\n%s", out)
		}
	})
	t.Run("a Node backend", func(t *testing.T) {
		node := needTool(t, "node", "nodejs")
		section := docSection(t, "docs/fake.md", "### Other backends' tests")
		fixtures := filepath.Join(t.TempDir(), "fixtures.json")
		testkit.WriteFile(t, fixtures, codeBlocks(t, section, "json")[0])
		env := map[string]string{"WX_APPID": config.MockAppID, "WX_APPSECRET": "any-test-secret"}
		fake := startServer(t, env, "-fake-only", "-fake-fixtures", fixtures)
		snippet := strings.ReplaceAll(codeBlocks(t, section, "js")[0], "http://127.0.0.1:9000", fake.url)
		cmd := exec.Command(node, "--input-type=module", "-e", snippet)
		cmd.Env = append(os.Environ(), "WX_APPID="+config.MockAppID, "WX_APPSECRET=any-test-secret")
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "o-alice u-alice\n" {
			t.Errorf("the Node snippet printed %q, %v; want the fixtures' openid and unionid, o-alice u-alice", out, err)
		}
	})
}

// codeBlocks are the fenced blocks of lang in text, without their fences.
func codeBlocks(t *testing.T, text, lang string) []string {
	t.Helper()
	var blocks []string
	for _, part := range strings.Split(text, "\n```"+lang+"\n")[1:] {
		block, _, found := strings.Cut(part, "\n```\n")
		if !found {
			t.Fatalf("a ```%s block is not closed", lang)
		}
		blocks = append(blocks, block+"\n")
	}
	if len(blocks) == 0 {
		t.Fatalf("no ```%s block", lang)
	}
	return blocks
}

// docSection is the text of the Markdown file at path under heading (its
// whole line, "## Security"), up to the next heading of its level or above.
func docSection(t *testing.T, path, heading string) string {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, part, found := strings.Cut("\n"+string(text), "\n"+heading+"\n")
	if !found {
		t.Fatalf("%s has no heading %q", path, heading)
	}
	level := strings.Index(heading, " ") // the number of #
	var kept []string
	inCode := false
	for _, line := range strings.Split(part, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if !inCode && strings.HasPrefix(line, "#") {
			if n := strings.Index(line, " "); n > 0 && n <= level && strings.Trim(line[:n], "#") == "" {
				break
			}
		}
		kept = append(kept, line)
	}
	return strings.Join(kept, "\n")
}
