// Not Go. This go.mod makes tools/webhooks a module of its own, so that
// go vet ./... and go test ./... of wxlogin stay out of node_modules.
module wxlogin/tools/webhooks

go 1.25
