package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/api"
)

// unitFile is a systemd unit: section → key → values in order (a key may
// repeat).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, name string) unitFile {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	var sec, cont string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if cont != "" {
			l, cont = cont+" "+l, ""
		}
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		if body, ok := strings.CutSuffix(l, "\\"); ok {
			cont = body
			continue
		}
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			sec = l[1 : len(l)-1]
			if u[sec] == nil {
				u[sec] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || sec == "" {
			t.Fatalf("%s:%d: %q is no key=value in a section", name, n, l)
		}
		u[sec][strings.TrimSpace(k)] = append(u[sec][strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// get returns the last value of a key ("" if unset), as systemd reads it.
func (u unitFile) get(sec, key string) string {
	v := u[sec][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// words returns every value of a list key, split on spaces.
func (u unitFile) words(sec, key string) []string {
	var out []string
	for _, v := range u[sec][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// execArgv splits an Exec*= line into argv, without systemd's prefixes
// (-, @, :, +, !); the units use no quoting.
func execArgv(t *testing.T, line string) []string {
	t.Helper()
	if strings.ContainsAny(line, `"'`) {
		t.Fatalf("%q: the test does not parse quoting", line)
	}
	argv := strings.Fields(line)
	if len(argv) == 0 {
		t.Fatal("empty Exec line")
	}
	argv[0] = strings.TrimLeft(argv[0], "-@:+!")
	return argv
}

// shutdownTimeout reads daemon.ShutdownTimeout from its source (deploy may
// not import gobgpd-ext/internal).
func shutdownTimeout(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "gobgpd-ext", "internal", "daemon", "daemon.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`const ShutdownTimeout = (\d+) \* time\.Second`).FindSubmatch(b)
	if m == nil {
		t.Fatal("daemon.go: no `const ShutdownTimeout = N * time.Second`; update this test")
	}
	s, _ := strconv.Atoi(string(m[1]))
	return time.Duration(s) * time.Second
}

// Settings and config paths the units, the README and the examples agree on.
const (
	gobgpdConf  = "/etc/gobgp/gobgpd.toml"
	fibgateConf = "/etc/fibgate/fibgate.yaml"
	gobgpdAPI   = "127.0.0.1:50051"
)

// TestSystemdUnits checks the three units: ExecStart runs a binary of the
// image from /usr/local/bin with flags its --help lists, the config paths
// are the documented ones, fibgated is ordered after gobgpd and stops before
// it, Type=notify goes with --sdnotify (gobgpd-ext only), each unit gets
// exactly the capabilities it needs, the hardening is in place, and the
// stop timeout leaves room for the daemons' bounded shutdown.
func TestSystemdUnits(t *testing.T) {
	units := map[string]struct {
		bin  string
		caps []string
		gate bool // runs fibgate's gate: API socket and sysctl
	}{
		"gobgpd-ext.service": {"gobgpd-ext", []string{"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}, true},
		"gobgpd.service":     {"gobgpd", []string{"CAP_NET_BIND_SERVICE"}, false},
		"fibgated.service":   {"fibgated", []string{"CAP_NET_ADMIN"}, true},
	}
	files, _ := filepath.Glob(filepath.Join("systemd", "*"))
	if len(files) != len(units) {
		t.Errorf("systemd/ holds %v: want exactly %d units (a new one needs a case here)", files, len(units))
	}
	stop := shutdownTimeout(t)
	hardening := map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		"SystemCallFilter":        "@system-service",
		"SystemCallArchitectures": "native",
		"DynamicUser":             "yes",
		"KillSignal":              "SIGTERM",
		"Restart":                 "on-failure",
	}
	execs := map[string]map[string]string{}
	for name, want := range units {
		t.Run(name, func(t *testing.T) {
			u := parseUnit(t, filepath.Join("systemd", name))
			for _, sec := range []string{"Unit", "Service", "Install"} {
				if u[sec] == nil {
					t.Errorf("no [%s] section", sec)
				}
			}
			if u.get("Install", "WantedBy") != "multi-user.target" {
				t.Errorf("WantedBy=%s, want multi-user.target", u.get("Install", "WantedBy"))
			}
			if n := len(u["Service"]["ExecStart"]); n != 1 {
				t.Fatalf("%d ExecStart lines, want 1", n)
			}
			argv := execArgv(t, u.get("Service", "ExecStart"))
			if argv[0] != "/usr/local/bin/"+want.bin {
				t.Errorf("ExecStart runs %s, want /usr/local/bin/%s", argv[0], want.bin)
			}
			vals := checkCommand(t, argv)
			execs[name] = vals
			if r := u.get("Service", "ExecReload"); r != "" && r != "/bin/kill -HUP $MAINPID" {
				t.Errorf("ExecReload=%s: want /bin/kill -HUP $MAINPID (gobgpd's reload)", r)
			}
			switch want.bin {
			case "gobgpd-ext", "gobgpd":
				if vals["-f"] != gobgpdConf || vals["--api-hosts"] != gobgpdAPI {
					t.Errorf("ExecStart: -f %q --api-hosts %q, want -f %s --api-hosts %s (loopback: the API is unauthenticated)", vals["-f"], vals["--api-hosts"], gobgpdConf, gobgpdAPI)
				}
				if want.bin == "gobgpd-ext" && vals["--fibgate-config"] != fibgateConf {
					t.Errorf("ExecStart: --fibgate-config %q, want %s", vals["--fibgate-config"], fibgateConf)
				}
			case "fibgated":
				if vals["-c"] != fibgateConf {
					t.Errorf("ExecStart: -c %q, want %s", vals["-c"], fibgateConf)
				}
			}
			notify := u.get("Service", "Type") == "notify"
			if notify != (vals["--sdnotify"] == "true") {
				t.Errorf("Type=%s with --sdnotify %v: they go together", u.get("Service", "Type"), vals["--sdnotify"] == "true")
			}
			if notify != (want.bin == "gobgpd-ext") {
				t.Errorf("Type=%s: only gobgpd-ext is Type=notify (stock gobgpd's READY=1 comes before it read its config)", u.get("Service", "Type"))
			}
			for k, v := range hardening {
				if got := u.get("Service", k); got != v {
					t.Errorf("%s=%q, want %q", k, got, v)
				}
			}
			bounding, ambient := u.words("Service", "CapabilityBoundingSet"), u.words("Service", "AmbientCapabilities")
			slices.Sort(bounding)
			slices.Sort(ambient)
			if !slices.Equal(bounding, want.caps) || !slices.Equal(ambient, want.caps) {
				t.Errorf("CapabilityBoundingSet=%v AmbientCapabilities=%v, want both %v", bounding, ambient, want.caps)
			}
			ts, err := time.ParseDuration(u.get("Service", "TimeoutStopSec") + "s")
			if err != nil || ts < stop+5*time.Second {
				t.Errorf("TimeoutStopSec=%s: want at least the daemons' shutdown bound (%s) plus 5 s", u.get("Service", "TimeoutStopSec"), stop)
			}
			if want.gate {
				if rd := u.get("Service", "RuntimeDirectory"); "/run/"+rd != filepath.Dir(api.DefaultSocket) {
					t.Errorf("RuntimeDirectory=%s: want the directory of the API's default socket %s", rd, api.DefaultSocket)
				}
				rw := u.words("Service", "ReadWritePaths")
				for _, fam := range []string{"ipv4", "ipv6"} {
					p := "/proc/sys/net/" + fam + "/fib_notify_on_flag_change"
					if !slices.Contains(rw, p) && !slices.Contains(rw, "-"+p) {
						t.Errorf("ReadWritePaths=%v: want %s (notify_mode writes it; ProtectKernelTunables makes /proc/sys read-only)", rw, p)
					}
				}
				if p := u.get("Service", "RestartPreventExitStatus"); p != "2" {
					t.Errorf("RestartPreventExitStatus=%q, want 2 (a configuration error: restarting does not help)", p)
				}
			}
		})
	}

	fibgated := parseUnit(t, filepath.Join("systemd", "fibgated.service"))
	for _, k := range []string{"After", "Requires"} {
		if !slices.Contains(fibgated.words("Unit", k), "gobgpd.service") {
			t.Errorf("fibgated.service: %s= lacks gobgpd.service (start after gobgpd, stop before it)", k)
		}
	}
	if len(fibgated["Unit"]["BindsTo"]) > 0 {
		t.Error("fibgated.service: BindsTo= would stop fibgated, and flush its routes, whenever gobgpd exits (see the unit's comment)")
	}
	if got, want := execs["fibgated.service"]["--gobgpd"], execs["gobgpd.service"]["--api-hosts"]; got != want {
		t.Errorf("fibgated --gobgpd %q, but gobgpd --api-hosts %q", got, want)
	}
	ext := parseUnit(t, filepath.Join("systemd", "gobgpd-ext.service"))
	for _, c := range []string{"gobgpd.service", "fibgated.service"} {
		if !slices.Contains(ext.words("Unit", "Conflicts"), c) {
			t.Errorf("gobgpd-ext.service: Conflicts= lacks %s (one setup or the other)", c)
		}
	}
}

// TestSystemdAnalyzeVerify runs `systemd-analyze verify` on the units (when
// it is installed), with ExecStart pointed at the built binaries: it knows
// every directive of the running systemd and warns about unknown ones.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	files, _ := filepath.Glob(filepath.Join("systemd", "*.service"))
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/", filepath.Dir(bin(t, "fibgated"))+"/")
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Base(f))
	}
	cmd := exec.Command(sa, append([]string{"verify", "--man=no"}, names...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
