// Package pages is what wxlogin serves to a browser at GET /: in mock mode
// the teaching page, a simulated phone that runs the login and
// authorization flow against this very server, beside a sequence diagram
// of every HTTP exchange, including the ones between wxlogin and the fake
// WeChat, which the fake records for it; in real mode a short status page.
// Both are embedded in the binary and load nothing from anywhere else.
package pages

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"slices"
	"strings"
)

// webFiles holds the teaching page, its script and its style sheet, and
// the status page.
//
//go:embed web
var webFiles embed.FS

// pagePolicy is the Content-Security-Policy of the pages: everything from
// this server, no inline script, nothing from a CDN, no framing.
const pagePolicy = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// writePage sends an HTML page or one of its assets.
func writePage(w http.ResponseWriter, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Security-Policy", pagePolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store") // The demo changes with the binary; a stale script would confuse.
	w.Write(body)
}

// Asset serves one embedded file of the teaching page, by name
// ("demo.js"), as contentType.
func Asset(name, contentType string) http.Handler {
	body, err := webFiles.ReadFile("web/" + name)
	if err != nil {
		panic("wxlogin: missing embedded file " + name) // A build mistake, caught by every test run.
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writePage(w, contentType, body)
	})
}

// Teaching serves the teaching page itself; its script and style sheet
// are Assets.
func Teaching() http.Handler { return Asset("demo.html", "text/html; charset=utf-8") }

// App is a mini program as the status page names it.
type App struct{ ID, Name string }

// Status serves the status page naming apps, by AppID. It shows nothing
// secret: an AppID is public, written into every copy of its mini program.
func Status(apps []App) http.Handler {
	status := template.Must(template.ParseFS(webFiles, "web/status.html"))
	list := slices.Clone(apps)
	slices.SortFunc(list, func(a, b App) int { return strings.Compare(a.ID, b.ID) })
	var page bytes.Buffer
	if err := status.Execute(&page, list); err != nil {
		panic("wxlogin: status page: " + err.Error()) // A template mistake, caught by its test.
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "text/html; charset=utf-8", page.Bytes())
	})
}
