package testkit

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"wxlogin/internal/redis"
)

// requireRedis skips the test when redis-server is not installed, unless
// WXLOGIN_REQUIRE_REDIS is set, as .ci/run sets it after installing it.
func requireRedis(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("WXLOGIN_REQUIRE_REDIS") != "" {
			t.Fatal("redis-server is not installed, and WXLOGIN_REQUIRE_REDIS says it must be")
		}
		SkipMissingTool(t, "redis-server is not installed (.ci/run installs Debian's redis-server; apt-get install redis-server)")
	}
	return path
}

// RedisServer is a redis-server a test started (StartRedis).
type RedisServer struct {
	Addr string // 127.0.0.1:port

	dir  string
	log  *SyncBuffer
	argv []string // how it was started, to start it again
	cmd  *exec.Cmd
	// exited is closed when the process started last has exited.
	exited <-chan struct{}
}

// FreeRedisPort is a loopback port free now, with the port 10000 above it
// (a cluster node's bus) free too.
func FreeRedisPort(t testing.TB) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err == nil {
			bus.Close()
			return port
		}
	}
	t.Fatal("no free pair of loopback ports")
	return 0
}

// StartRedis runs redis-server on a free loopback port, with no
// persistence unless args ask for it, and stops it when the test ends. A
// port taken between its choice and the server's bind (by another test
// run on the machine) is given up for another. Where redis-server is not
// installed the test is skipped, or fails if WXLOGIN_REQUIRE_REDIS is set.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	bin := requireRedis(t)
	for attempt := 1; ; attempt++ {
		port := FreeRedisPort(t)
		s := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: t.TempDir(), log: &SyncBuffer{}}
		base := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", s.dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no", "--logfile", ""}
		s.argv = append([]string{bin}, append(base, args...)...)
		err := s.run(t)
		if err == nil {
			t.Cleanup(s.Kill)
			return s
		}
		if attempt == 5 || !strings.Contains(s.log.String(), "Address already in use") {
			t.Fatalf("redis-server on %s: %v:\n%s", s.Addr, err, s.log)
		}
	}
}

// Start runs the server again, on its port and its directory, and waits
// until it answers.
func (s *RedisServer) Start(t testing.TB) {
	t.Helper()
	if err := s.run(t); err != nil {
		t.Fatalf("redis-server on %s: %v:\n%s", s.Addr, err, s.log)
	}
}

// run runs the server and waits until it answers, or says why it does not.
func (s *RedisServer) run(t testing.TB) error {
	t.Helper()
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		close(exited)
	}(s.cmd)
	return s.waitReady()
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (s *RedisServer) Kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// Pause stops the server with SIGSTOP: hung, its connections open,
// nothing answers.
func (s *RedisServer) Pause() { s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused server go on, with SIGCONT.
func (s *RedisServer) Resume() { s.cmd.Process.Signal(syscall.SIGCONT) }

// waitReady polls the server with PING until it answers, for 10 s at most,
// or until it exits.
func (s *RedisServer) waitReady() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.exited:
			return errors.New("it exited")
		default:
		}
		conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(time.Second))
			conn.Write([]byte("PING\r\n"))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			// +PONG, or -NOAUTH from a server with a password: up either way.
			if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("not ready after 10 s")
		}
		time.Sleep(20 * time.Millisecond) // a poll with a deadline: the server says nothing when it is ready
	}
}

// Client is a client of s with the given URL userinfo ("user:password@")
// and options ("/db?pool=2"), closed when the test ends.
func (s *RedisServer) Client(t testing.TB, userinfo, options string) *redis.Client {
	t.Helper()
	cfg, err := redis.ParseURL("redis://" + userinfo + s.Addr + options)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(cfg)
	t.Cleanup(c.Close)
	return c
}

// RedisCluster is a Redis Cluster a test started (StartRedisCluster):
// masters, each with its share of the slots.
type RedisCluster struct {
	Nodes []*RedisServer
}

// StartRedisCluster starts n redis-servers in cluster mode on loopback,
// joins them, gives each master an even share of the slots, and waits
// until every node says the cluster is ok. Everything stops with the test.
func StartRedisCluster(t testing.TB, n int, args ...string) *RedisCluster {
	t.Helper()
	c := &RedisCluster{}
	for range n {
		c.Nodes = append(c.Nodes, StartRedis(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000"}, args...)...))
	}
	ctx := t.Context()
	first := c.Direct(t, 0)
	for _, node := range c.Nodes[1:] {
		host, port, _ := strings.Cut(node.Addr, ":")
		if _, err := first.Do(ctx, "CLUSTER", "MEET", host, port); err != nil {
			t.Fatal(err)
		}
	}
	per := redis.SlotCount / n
	for i := range c.Nodes {
		start, end := i*per, (i+1)*per-1
		if i == n-1 {
			end = redis.SlotCount - 1
		}
		if _, err := c.Direct(t, i).Do(ctx, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(start), strconv.Itoa(end)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitOK(t)
	return c
}

// Direct is a plain client of node i alone, as redis-cli without -c is.
func (c *RedisCluster) Direct(t testing.TB, i int) *redis.Client {
	return c.Nodes[i].Client(t, "", "")
}

// waitOK waits until every node reports cluster_state:ok and knows every
// other node, 30 s at most.
func (c *RedisCluster) waitOK(t testing.TB) {
	t.Helper()
	WaitWithin(t, 30*time.Second, "the cluster to be ok", func() bool {
		for i := range c.Nodes {
			info, err := c.Direct(t, i).Do(t.Context(), "CLUSTER", "INFO")
			s, _ := info.(string)
			if err != nil || !strings.Contains(s, "cluster_state:ok") || !strings.Contains(s, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))) {
				return false
			}
		}
		return true
	})
}

// Client is a cluster client seeded with the first node only: it must
// learn the rest.
func (c *RedisCluster) Client(t testing.TB) *redis.Client {
	t.Helper()
	cfg, err := redis.ParseURL("redis://" + c.Nodes[0].Addr + "?cluster=true")
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(cfg)
	t.Cleanup(rc.Close)
	return rc
}

// NodeID is node i's cluster id.
func (c *RedisCluster) NodeID(t testing.TB, i int) string {
	t.Helper()
	id, err := c.Direct(t, i).Do(t.Context(), "CLUSTER", "MYID")
	if err != nil {
		t.Fatal(err)
	}
	return id.(string)
}

// OwnerOf is the index of the node that holds key's slot, as
// StartRedisCluster shared them out.
func (c *RedisCluster) OwnerOf(key string) int {
	return redis.Slot(key) / (redis.SlotCount / len(c.Nodes)) % len(c.Nodes)
}
