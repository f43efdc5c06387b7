// Command hello is the baseline of wxlogin's load tests: a plain net/http
// server answering every request with a small JSON body, the most a Go HTTP
// server can do on the machine. scripts/load measures wxlogin's routes as a
// ratio to it, with the same wrk settings in the same run.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// scripts/load reads the address from this line.
	fmt.Fprintf(os.Stderr, "hello listening url=http://%s\n", ln.Addr())
	body := []byte(`{"status":0,"msg":"ok","data":{"hello":"world"}}` + "\n")
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(body)
	})))
}
