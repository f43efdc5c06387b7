package pages

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"wxlogin/internal/testkit"
)

// Every character the teaching page can show is drawn by a font installed
// here (fontconfig's fc-list): the CJK ones by fonts-noto-cjk, which
// .ci/run and scripts/screenshot install, the symbols by DejaVu; no emoji,
// which those fonts draw as empty boxes.
func TestTeachingPageGlyphsHaveFonts(t *testing.T) {
	fcList, err := exec.LookPath("fc-list")
	if err != nil {
		missingTool(t, "fc-list", "fontconfig")
	}
	if out, _ := exec.Command(fcList, ":lang=zh-cn", "family").Output(); !strings.Contains(string(out), "Noto Sans CJK SC") {
		missingTool(t, "Noto Sans CJK SC", "fonts-noto-cjk")
	}
	runes := map[rune]bool{}
	for _, name := range []string{"demo.html", "demo.js", "demo.css", "status.html"} {
		page, err := fs.ReadFile(webFiles, "web/"+name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range string(page) {
			if r >= 0x80 {
				runes[r] = true
			}
		}
	}
	for r := range runes {
		out, err := exec.Command(fcList, fmt.Sprintf(":charset=%x", r), "family").Output()
		if err != nil || len(bytes.TrimSpace(out)) == 0 {
			t.Errorf("no installed font draws %q (U+%04X), which the teaching page shows", r, r)
		}
	}
}

// missingTool skips t for a tool that is not installed, or fails it where
// WXLOGIN_REQUIRE_TOOLS says every tool must be (CI).
func missingTool(t *testing.T, what, pkg string) {
	t.Helper()
	if os.Getenv("WXLOGIN_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s is not installed (Debian's %s package), and WXLOGIN_REQUIRE_TOOLS is set", what, pkg)
	}
	testkit.SkipMissingTool(t, fmt.Sprintf("%s is not installed (apt-get install %s)", what, pkg))
}
