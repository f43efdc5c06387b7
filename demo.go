package main

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"slices"
	"strings"
)

// This file is the teaching page at GET /. In mock mode it is a simulated
// phone that runs the login and authorization flow against this very server,
// beside a sequence diagram of every HTTP exchange, including the ones
// between wxlogin and the fake WeChat, which the fake records for it. In real
// mode GET / is a short status page. Both are embedded in the binary and load
// nothing from anywhere else.

// webFiles holds the teaching page, its script and its style sheet.
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

// handleAsset serves one embedded file of the teaching page.
func handleAsset(name, contentType string) http.Handler {
	body, err := webFiles.ReadFile("web/" + name)
	if err != nil {
		panic("wxlogin: missing embedded file " + name) // A build mistake, caught by every test run.
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writePage(w, contentType, body)
	})
}

// handleHome serves GET /: the teaching page in mock mode, a status page
// naming the mini programs served otherwise. Neither shows anything secret:
// an AppID is public, written into every copy of its mini program.
func handleHome(apps appSet, mock bool) http.Handler {
	if mock {
		return handleAsset("demo.html", "text/html; charset=utf-8")
	}
	status := template.Must(template.ParseFS(webFiles, "web/status.html"))
	type app struct{ ID, Name string }
	var list []app
	for _, a := range apps {
		list = append(list, app{a.ID, a.Name})
	}
	slices.SortFunc(list, func(a, b app) int { return strings.Compare(a.ID, b.ID) })
	var page bytes.Buffer
	if err := status.Execute(&page, list); err != nil {
		panic("wxlogin: status page: " + err.Error()) // A template mistake, caught by its test.
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "text/html; charset=utf-8", page.Bytes())
	})
}
