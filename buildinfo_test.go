package main

import (
	"bytes"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// -version prints the build: a binary built in this checkout names the
// commit it was built from (the go command stamps it in), and the Go
// release; it starts nothing.
func TestVersionNamesTheCommitBuilt(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"wxlogin", "-version"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("run -version = %v", err)
	}
	if line := out.String(); !strings.HasPrefix(line, "wxlogin ") || !strings.HasSuffix(line, " "+runtime.Version()+"\n") {
		t.Errorf("run -version printed %q; want wxlogin, its version and revision, and %s", line, runtime.Version())
	}

	// -buildvcs is the go command's default, auto, in a checkout; this
	// machine's GOFLAGS turns it off, so the test says it.
	want, buildVCS := "revision (unknown)", "-buildvcs=false" // not built in a git checkout
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		want, buildVCS = "revision "+strings.TrimSpace(string(head)), "-buildvcs=true"
	}
	binary := filepath.Join(t.TempDir(), "wxlogin")
	if b, err := exec.Command("go", "build", buildVCS, "-o", binary, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := exec.Command(binary, "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), want) {
		t.Errorf("the built binary's -version is %q; want it to name %s", b, want)
	}
}
