package metrics

import (
	"cmp"
	"runtime"
	"runtime/debug"
)

// BuildInfo is what the binary knows of its own build: the module's
// version and the VCS revision the go command stamps into a binary built
// in a checkout, for -version and the wxlogin_build_info metric.
type BuildInfo struct {
	version   string // the module's version: a tag, a pseudo-version, or "(devel)"
	revision  string // the commit built, "" when not built in a checkout
	modified  bool   // the checkout had changes not committed
	goVersion string
}

// ReadBuildInfo is the running binary's BuildInfo.
func ReadBuildInfo() BuildInfo {
	b := BuildInfo{goVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.version = info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.modified":
			b.modified = s.Value == "true"
		}
	}
	return b
}

// String is the line -version prints.
func (b BuildInfo) String() string {
	line := "wxlogin " + cmp.Or(b.version, "(unknown)") + " revision " + cmp.Or(b.revision, "(unknown)")
	if b.modified {
		line += " (modified)"
	}
	return line + " " + b.goVersion
}
