// Not Go. This go.mod makes tools/conform a module of its own, so that
// go vet ./... and go test ./... of wxlogin stay out of node_modules.
module wxlogin/tools/conform

go 1.25
