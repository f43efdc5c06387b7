// Command codes fetches wx.login codes from a fake WeChat (wxlogin
// -fake-only) for load tests, one per line on stdout: each login a load test
// sends needs a fresh single-use code. With -users 0 every code is for a new
// user; with -users N the codes cycle over N users, who log in again and again.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	fake := flag.String("fake", "http://127.0.0.1:9000", "the fake WeChat's URL")
	n := flag.Int("n", 100_000, "how many codes")
	users := flag.Int("users", 0, "how many distinct users (0: a new user per code)")
	prefix := flag.String("prefix", "load", "user names start with this")
	flag.Parse()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	codes := make([]string, *n)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < *n; i += 16 {
				user := i
				if *users > 0 {
					user = i % *users
				}
				code, err := fetch(client, *fake, *prefix+strconv.Itoa(user))
				if err != nil {
					errs <- err
					return
				}
				codes[i] = code
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		log.Fatal(err)
	}
	var out bytes.Buffer
	for _, c := range codes {
		out.WriteString(c + "\n")
	}
	os.Stdout.Write(out.Bytes())
}

// fetch asks the fake's wx.login for one code for user.
func fetch(client *http.Client, fake, user string) (string, error) {
	body, _ := json.Marshal(map[string]string{"user": user})
	resp, err := client.Post(fake+"/mock/wx.login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var reply struct{ Code string }
	if err := json.Unmarshal(raw, &reply); err != nil || reply.Code == "" {
		return "", fmt.Errorf("wx.login for %s = %d %s", user, resp.StatusCode, raw)
	}
	return reply.Code, nil
}
