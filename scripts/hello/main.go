// Command hello is the baseline of wxlogin's load tests: a plain net/http
// server answering every request with a small JSON body, the most a Go HTTP
// server can do on the machine. scripts/load measures wxlogin's routes as a
// ratio to it, with the same wrk settings in the same run.
//
// With -upstream URL it is the floor of a login instead: each request
// first GETs the upstream (another hello) on the kept-alive path wxlogin
// calls WeChat on (internal/httpconn), then answers. That is a login's two
// HTTP exchanges, one in and one out, and nothing else.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
	"wxlogin/internal/httpconn"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	upstream := flag.String("upstream", "", "a URL to GET before each answer (the floor of a login)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// scripts/load reads the address from this line.
	fmt.Fprintf(os.Stderr, "hello listening url=http://%s\n", ln.Addr())
	body := []byte(`{"status":0,"msg":"ok","data":{"hello":"world"}}` + "\n")
	var up *httpconn.Client
	if *upstream != "" {
		if up, err = httpconn.New(*upstream, 64, nil); err != nil {
			log.Fatal(err)
		}
	}
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if up != nil {
			if _, _, err := up.Get(r.Context(), "/", 5*time.Second, 64<<10); err != nil {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(body)
	})))
}
