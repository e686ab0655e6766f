//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	flags "github.com/jessevdk/go-flags"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// TestGobgpdsSyslogAndSentryFlags: gobgpd-ext takes gobgpd's --syslog,
// --syslog-facility and --sentry-* flags, so a unit file written for
// gobgpd starts it unchanged, and they do what gobgpd's do: every log
// line also goes to the syslog daemon named (here over UDP), tagged bgpd
// with the facility and the line's severity; with --sentry-debug one
// message reaches the Sentry DSN at start. SIGHUP then reloads the fibgate
// settings too.
func TestGobgpdsSyslogAndSentryFlags(t *testing.T) {
	ns := kerneltest.NewNS(t)
	dir := t.TempDir()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	var mu sync.Mutex
	var syslogLines []string
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			syslogLines = append(syslogLines, string(buf[:n]))
			mu.Unlock()
		}
	}()
	var sentryBodies syncbuf.Buffer
	sentrySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sentryBodies.Write(append([]byte(r.URL.Path+" "), b...))
		w.WriteHeader(http.StatusOK)
	}))
	defer sentrySrv.Close()
	dsn := "http://public@" + strings.TrimPrefix(sentrySrv.URL, "http://") + "/1"

	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	settings := fmt.Sprintf("netns: %s\nnotify_mode: \"1\"\nbackend:\n  type: sim\napi:\n  socket: %s\n", ns, filepath.Join(dir, "fibgate.sock"))
	conf := "[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n  port = -1\n"
	args := []string{"-f", write("gobgpd.toml", conf), "--api-hosts", "unix://" + filepath.Join(dir, "gobgp.sock"), "--pprof-disable",
		"--fibgate-config", write("fibgate.yaml", settings),
		"-s", "udp:" + udp.LocalAddr().String(), "--syslog-facility", "local3",
		"--sentry-dsn", dsn, "--sentry-environment", "lab", "--sentry-debug"}
	var stdout, stderr syncbuf.Buffer
	sigs := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() { done <- run(args, &stdout, &stderr, sigs) }()
	defer func() {
		sigs <- syscall.SIGTERM
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d after SIGTERM; stderr:\n%s", code, stderr.String())
			}
		case <-time.After(40 * time.Second):
			t.Errorf("gobgpd-ext did not stop within 40 s of SIGTERM")
		}
	}()

	// local3 (19) * 8 + info (6) = 158: "<158>" then the time, the host,
	// "bgpd[pid]:" and the line as on stderr.
	var started string
	lab.Eventually(t, 20*time.Second, "\"gobgpd-ext started\" at the syslog daemon", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range syslogLines {
			if strings.Contains(l, "gobgpd-ext started") {
				started = l
				return nil
			}
		}
		return fmt.Errorf("got %q\nstderr:\n%s", syslogLines, stderr.String())
	})
	if !strings.HasPrefix(started, "<158>") || !strings.Contains(started, " bgpd[") || !strings.Contains(started, `"msg":"gobgpd-ext started"`) {
		t.Errorf("syslog line %q: want <158>, the tag bgpd and the JSON line", started)
	}
	if !strings.Contains(stderr.String(), "gobgpd-ext started") {
		t.Errorf("stderr lost its lines to syslog:\n%s", stderr.String())
	}
	lab.Eventually(t, 10*time.Second, "the debug message at the Sentry DSN", func() error {
		if !strings.Contains(sentryBodies.String(), "Sentry debug mode enabled on gobgpd-ext") {
			return fmt.Errorf("got %q", sentryBodies.String())
		}
		return nil
	})
	if !strings.Contains(sentryBodies.String(), `"environment":"lab"`) {
		t.Errorf("the Sentry event has no environment lab: %.300s", sentryBodies.String())
	}

	// SIGHUP reads gobgpd's config file, then the fibgate settings.
	sigs <- syscall.SIGHUP
	lab.Eventually(t, 10*time.Second, "a reload of the fibgate settings after SIGHUP", func() error {
		if !strings.Contains(stderr.String(), "gating policy did not change") {
			return fmt.Errorf("stderr:\n%s", stderr.String())
		}
		return nil
	})
}

// TestEveryGobgpdFlagIsTaken reads the flags of the gobgpd built from the
// GoBGP module in go.mod (its --help) and checks that gobgpd-ext takes each
// one, with a value where gobgpd wants one: the drop-in promise, kept when
// GoBGP is upgraded and adds a flag.
func TestEveryGobgpdFlagIsTaken(t *testing.T) {
	out, _ := exec.Command(filepath.Join(lab.GobgpBinaries(t), "gobgpd"), "--help").CombinedOutput()
	flagLine := regexp.MustCompile(`(?m)^\s+(?:-(\w), )?--([a-z0-9-]+)(=?)`)
	found := flagLine.FindAllStringSubmatch(string(out), -1)
	if len(found) < 10 {
		t.Fatalf("gobgpd --help: %d flags found in\n%s", len(found), out)
	}
	p := flags.NewParser(&options{}, flags.Default)
	for _, m := range found {
		short, long, takes := m[1], m[2], m[3] == "="
		if long == "help" {
			continue
		}
		o := p.FindOptionByLongName(long)
		if o == nil {
			t.Errorf("gobgpd's --%s is not a flag of gobgpd-ext", long)
			continue
		}
		if hasValue := o.Field().Type.Kind() != reflect.Bool; hasValue != takes {
			t.Errorf("--%s: takes a value %v in gobgpd-ext, %v in gobgpd", long, hasValue, takes)
		}
		if short != "" && (o.ShortName == 0 || string(o.ShortName) != short) {
			t.Errorf("--%s: short name %q in gobgpd-ext, -%s in gobgpd", long, o.ShortName, short)
		}
	}
}
