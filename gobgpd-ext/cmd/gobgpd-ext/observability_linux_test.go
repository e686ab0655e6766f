//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// TestOneLogStreamAndOneMetricsEndpoint runs gobgpd-ext with the sim on a
// namespace: every line on stderr, GoBGP's and fibgate's, is one JSON
// object of the same shape, and one /metrics serves GoBGP's, fibgate's,
// Go's and the process's metrics: on the settings' metrics address when
// it is set (then --pprof-host has pprof only), else on --pprof-host.
func TestOneLogStreamAndOneMetricsEndpoint(t *testing.T) {
	for _, settingsMetrics := range []bool{true, false} {
		t.Run(fmt.Sprintf("settings metrics address %v", settingsMetrics), func(t *testing.T) {
			ns := kerneltest.NewNS(t)
			dir := t.TempDir()
			pprofHost, metricsAddr := apitest.FreeAddr(t), ""
			settings := fmt.Sprintf("netns: %s\nnotify_mode: \"1\"\nbackend:\n  type: sim\napi:\n  socket: %s\n", ns, filepath.Join(dir, "fibgate.sock"))
			if settingsMetrics {
				metricsAddr = apitest.FreeAddr(t)
				settings += "metrics: " + metricsAddr + "\n"
			}
			// A neighbour that never answers gives GoBGP's per-peer
			// metrics something to report; port -1 listens for nothing.
			conf := "[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n  port = -1\n" +
				"[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.99\"\n    peer-as = 65002\n" +
				"  [neighbors.transport.config]\n    passive-mode = true\n"
			write := func(name, body string) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			args := []string{"-f", write("gobgpd.toml", conf), "--api-hosts", "unix://" + filepath.Join(dir, "gobgp.sock"),
				"--pprof-host", pprofHost, "--fibgate-config", write("fibgate.yaml", settings)}
			var stdout, stderr syncbuf.Buffer
			sigs := make(chan os.Signal, 1)
			done := make(chan int, 1)
			go func() { done <- run(args, &stdout, &stderr, sigs) }()
			stopped := false
			stop := func() int {
				if stopped {
					return 0
				}
				stopped = true
				sigs <- syscall.SIGTERM
				select {
				case code := <-done:
					return code
				case <-time.After(40 * time.Second):
					t.Fatalf("gobgpd-ext did not stop within 40 s of SIGTERM; stderr:\n%s", stderr.String())
					return -1
				}
			}
			t.Cleanup(func() { stop() })

			endpoint := "http://" + pprofHost + "/metrics"
			if settingsMetrics {
				endpoint = "http://" + metricsAddr + "/metrics"
			}
			want := []string{"bgp_peer_state{", "fibgate_gobgp_metrics_age_seconds", "fibgate_fib_routes", "fibgate_build_info{", "go_goroutines", "process_resident_memory_bytes"}
			var scrape string
			deadline := time.Now().Add(20 * time.Second)
			for {
				var err error
				scrape, err = get(endpoint)
				missing := ""
				for _, w := range want {
					if !strings.Contains(scrape, w) {
						missing = w
						break
					}
				}
				if err == nil && missing == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %v, missing %q:\n%s\nstderr:\n%s", endpoint, err, missing, scrape, stderr.String())
				}
				time.Sleep(100 * time.Millisecond) // polling with a deadline
			}
			if settingsMetrics {
				if body, err := get("http://" + pprofHost + "/metrics"); err == nil {
					t.Errorf("--pprof-host serves metrics too, a second endpoint:\n%.200s", body)
				}
				if _, err := get("http://" + pprofHost + "/debug/pprof/"); err != nil {
					t.Errorf("--pprof-host lost pprof: %v", err)
				}
			}

			if code := stop(); code != 0 {
				t.Errorf("exit %d after SIGTERM; stderr:\n%s", code, stderr.String())
			}
			if stdout.String() != "" {
				t.Errorf("log lines on stdout, a second stream:\n%s", stdout.String())
			}
			var gobgpLines, fibgateLines int
			for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Errorf("not a JSON line: %q", l)
					continue
				}
				for _, k := range []string{"time", "level", "msg"} {
					if _, ok := m[k]; !ok {
						t.Errorf("line without %q: %q", k, l)
					}
				}
				if _, ok := m["Topic"]; ok {
					gobgpLines++ // GoBGP's fields kept as they are
				} else {
					fibgateLines++
				}
			}
			if gobgpLines == 0 || fibgateLines == 0 {
				t.Errorf("%d GoBGP and %d fibgate lines, want both:\n%s", gobgpLines, fibgateLines, stderr.String())
			}
		})
	}
}

// get returns the body of a 200 answer to a GET of url.
func get(url string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}
