// Not Go. This go.mod makes tools/wechat a module of its own, so that
// go vet ./... and go test ./... of wxlogin stay out of node_modules, where
// an npm package ships Go sources.
module wxlogin/tools/wechat

go 1.25
