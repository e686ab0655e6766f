package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The tests build the binaries once per run into binDir: the five the
// image ships and settingsdump (testdata/settingsdump, see its doc).
var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

// imported are the binaries the image ships, by name, with the package
// each is built from (module-relative for fibgate's own).
var imported = []struct{ name, pkg string }{
	{"gobgpd-ext", "./gobgpd-ext/cmd/gobgpd-ext"},
	{"fibgated", "./gobgpd-ext/cmd/fibgated"},
	{"fibgate", "./gobgpd-ext/cmd/fibgate"},
	{"gobgpd", "github.com/osrg/gobgp/v3/cmd/gobgpd"},
	{"gobgp", "github.com/osrg/gobgp/v3/cmd/gobgp"},
}

// dumpDir is where the overlay puts settingsdump: under gobgpd-ext/, so that
// it may import gobgpd-ext/internal/daemon. Nothing is written there.
const dumpDir = "gobgpd-ext/internal/daemon/deploysettingsdump"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fibgate-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// root is the module's root directory (tests run in deploy/).
func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return r
}

// bin returns the path of a built binary, building them all on first use.
func bin(t *testing.T, name string) string {
	t.Helper()
	r := root(t)
	buildOnce.Do(func() {
		main, err := filepath.Abs(filepath.Join("testdata", "settingsdump", "main.go"))
		if err != nil {
			buildErr = err
			return
		}
		overlay, err := json.Marshal(map[string]map[string]string{
			"Replace": {filepath.Join(r, dumpDir, "main.go"): main},
		})
		if err != nil {
			buildErr = err
			return
		}
		ov := filepath.Join(binDir, "overlay.json")
		if buildErr = os.WriteFile(ov, overlay, 0o644); buildErr != nil {
			return
		}
		args := []string{"build", "-overlay", ov, "-o", binDir + string(filepath.Separator)}
		for _, b := range imported {
			args = append(args, b.pkg)
		}
		args = append(args, "./"+dumpDir)
		cmd := exec.Command("go", args...)
		cmd.Dir = r
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if name == "settingsdump" {
		name = filepath.Base(dumpDir)
	}
	p := filepath.Join(binDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("binary %s was not built: %v", name, err)
	}
	return p
}

// run runs a built binary and returns its stdout; a non-zero exit fails
// the test with stderr.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin(t, name), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// flagSpec maps every spelling of a binary's flags ("-f", "--config-file")
// to whether the flag takes a value.
type flagSpec map[string]bool

var (
	// go-flags (gobgpd, gobgpd-ext): "  -f, --config-file=   text", "      --sdnotify   text".
	goFlagsLine = regexp.MustCompile(`(?m)^\s+(?:-(\w), )?--([\w-]+)(=?)`)
	// Go's flag package (fibgated, fibgate): "  -c string", "  -check", "  -v\ttext".
	stdFlagLine = regexp.MustCompile(`(?m)^  -([\w-]+)(?:([ \t]).*)?$`)
	// cobra (gobgp): "  -u, --host string   text", "      --tls   text".
	cobraFlagLine = regexp.MustCompile(`(?m)^\s+(?:-(\w), )?--([\w-]+)(?: (\w+))?(?:\s|$)`)
	// a command list: "  serve     text" (fibgate), "  global      " (gobgp).
	commandLine = regexp.MustCompile(`(?m)^  ([a-z][\w-]*)(?:\s{2,}|\s*$)`)
)

func parseHelp(style, help string) flagSpec {
	spec := flagSpec{}
	switch style {
	case "go-flags":
		for _, m := range goFlagsLine.FindAllStringSubmatch(help, -1) {
			if m[1] != "" {
				spec["-"+m[1]] = m[3] == "="
			}
			spec["--"+m[2]] = m[3] == "="
		}
	case "flag":
		for _, m := range stdFlagLine.FindAllStringSubmatch(help, -1) {
			spec["-"+m[1]] = m[2] == " "
			spec["--"+m[1]] = m[2] == " "
		}
	case "cobra":
		for _, m := range cobraFlagLine.FindAllStringSubmatch(help, -1) {
			if m[1] != "" {
				spec["-"+m[1]] = m[3] != ""
			}
			spec["--"+m[2]] = m[3] != ""
		}
	}
	return spec
}

// section returns the lines of help after the line starting with title up
// to the next blank line.
func section(help, title string) string {
	_, after, ok := strings.Cut(help, "\n"+title)
	if !ok {
		return ""
	}
	_, after, _ = strings.Cut(after, "\n")
	block, _, _ := strings.Cut(after, "\n\n")
	return block
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]string{}
)

// help returns what `name args... --help` prints, stdout and stderr
// together, whatever the exit status (gobgpd exits 1 after its usage).
func help(t *testing.T, name string, args ...string) string {
	t.Helper()
	key := strings.Join(append([]string{name}, args...), " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if h, ok := helpCache[key]; ok {
		return h
	}
	out, _ := exec.Command(bin(t, name), append(slices.Clone(args), "--help")...).CombinedOutput()
	h := string(out)
	if !strings.Contains(h, "-") {
		t.Fatalf("%s --help printed no flags:\n%s", key, h)
	}
	helpCache[key] = h
	return h
}

// splitArgs checks argv's flags against spec and returns the positional
// arguments.
func splitArgs(spec flagSpec, args []string) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(pos, args[i+1:]...), nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, _, inline := strings.Cut(a, "=")
		takes, ok := spec[name]
		if !ok {
			return nil, fmt.Errorf("unknown flag %s", name)
		}
		if takes && !inline {
			if i+1 == len(args) {
				return nil, fmt.Errorf("flag %s needs a value", name)
			}
			i++
		}
	}
	return pos, nil
}

// checkCommand checks a command line of one of the image's binaries (argv[0]
// a path or a name) against that binary's --help: every flag exists and has
// its value, and subcommands exist. It returns the parsed flags' values by
// flag as written ("-f" → "/etc/gobgp/gobgpd.toml"), for cross-checks.
func checkCommand(t *testing.T, argv []string) map[string]string {
	t.Helper()
	if len(argv) == 0 {
		t.Fatal("empty command")
	}
	name, args := filepath.Base(argv[0]), argv[1:]
	var spec flagSpec
	var sub []string
	switch name {
	case "gobgpd-ext", "gobgpd":
		spec = parseHelp("go-flags", help(t, name))
	case "fibgated":
		spec = parseHelp("flag", help(t, name))
	case "fibgate":
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			t.Fatalf("%q: fibgate needs a command first", argv)
		}
		cmds := commandNames(section(help(t, name), "Commands:"))
		if !slices.Contains(cmds, args[0]) {
			t.Fatalf("%q: fibgate has no command %q (it has %v)", argv, args[0], cmds)
		}
		sub, args = args[:1], args[1:]
		spec = parseHelp("flag", help(t, name, sub...))
	case "gobgp":
		spec = parseHelp("cobra", help(t, name))
	default:
		t.Fatalf("%q: %s is not a binary of the image", argv, name)
	}
	if len(spec) == 0 {
		t.Fatalf("no flags found in %s --help", name)
	}
	pos, err := splitArgs(spec, args)
	if err != nil {
		t.Fatalf("%q: %v (see %s %s --help)", argv, err, name, strings.Join(sub, " "))
	}
	switch {
	case name == "gobgp":
		cmds := commandNames(section(help(t, name), "Available Commands:"))
		if len(pos) == 0 || !slices.Contains(cmds, pos[0]) {
			t.Fatalf("%q: want a gobgp command first (one of %v)", argv, cmds)
		}
	case len(pos) > 0:
		t.Fatalf("%q: unexpected arguments %q", argv, pos)
	}
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		if n, v, ok := strings.Cut(args[i], "="); ok && spec[n] {
			vals[n] = v
		} else if spec[args[i]] && i+1 < len(args) {
			vals[args[i]] = args[i+1]
			i++
		} else if _, ok := spec[args[i]]; ok {
			vals[args[i]] = "true"
		}
	}
	return vals
}

func commandNames(block string) []string {
	var out []string
	for _, m := range commandLine.FindAllStringSubmatch(block, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestHelpParsing keeps the --help parsers honest: each finds the flags the
// deployment files rely on, with the right arity, so that a parser broken
// by a new --help layout cannot pass every command line unchecked.
func TestHelpParsing(t *testing.T) {
	for _, c := range []struct {
		name, style string
		sub         []string
		want        map[string]bool
	}{
		{"gobgpd-ext", "go-flags", nil, map[string]bool{"-f": true, "--config-file": true, "-t": true, "--api-hosts": true, "-p": false, "--sdnotify": false, "--fibgate-config": true, "-d": false}},
		{"gobgpd", "go-flags", nil, map[string]bool{"-f": true, "-t": true, "--api-hosts": true, "-p": false, "--sdnotify": false, "-d": false}},
		{"fibgated", "flag", nil, map[string]bool{"--gobgpd": true, "-c": true, "--check": false, "--print-fallback": false}},
		{"fibgate", "flag", []string{"stats"}, map[string]bool{"--socket": true, "--timeout": true, "--json": false}},
		{"gobgp", "cobra", nil, map[string]bool{"-u": true, "--host": true, "-p": true, "--port": true, "--target": true, "-j": false}},
	} {
		spec := parseHelp(c.style, help(t, c.name, c.sub...))
		for f, takes := range c.want {
			got, ok := spec[f]
			if !ok || got != takes {
				t.Errorf("%s %v --help: flag %s found %v, takes a value %v; want found, %v", c.name, c.sub, f, ok, got, takes)
			}
		}
		if _, ok := spec["--no-such-flag"]; ok {
			t.Errorf("%s: parser invents flags", c.name)
		}
	}
	if cmds := commandNames(section(help(t, "fibgate"), "Commands:")); !slices.Contains(cmds, "stats") || !slices.Contains(cmds, "serve") {
		t.Errorf("fibgate commands %v: want serve and stats among them", cmds)
	}
	if cmds := commandNames(section(help(t, "gobgp"), "Available Commands:")); !slices.Contains(cmds, "global") {
		t.Errorf("gobgp commands %v: want global among them", cmds)
	}
	if _, err := splitArgs(parseHelp("flag", help(t, "fibgated")), []string{"--gobgpd"}); err == nil {
		t.Error("a value flag without its value passed")
	}
	if _, err := splitArgs(parseHelp("go-flags", help(t, "gobgpd")), []string{"--fibgate-config", "x"}); err == nil {
		t.Error("stock gobgpd accepted --fibgate-config")
	}
}

// TestVersionFlags: each of fibgate's binaries answers --version with one
// line naming fibgate's version, the Go release it was built with and the
// GoBGP version go.mod requires, so a bug report can say what ran.
func TestVersionFlags(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join(root(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/osrg/gobgp/v3 (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/osrg/gobgp/v3")
	}
	for _, c := range []struct{ name, arg string }{{"gobgpd-ext", "--version"}, {"fibgated", "--version"}, {"fibgate", "--version"}, {"fibgate", "version"}} {
		out := run(t, c.name, c.arg)
		want := regexp.MustCompile(`^` + c.name + ` \S+ \(` + regexp.QuoteMeta(runtime.Version()) + `, GoBGP ` + regexp.QuoteMeta(string(m[1])) + `\)\n$`)
		if !want.MatchString(out) {
			t.Errorf("%s %s printed %q, want it to match %s", c.name, c.arg, out, want)
		}
	}
	if _, ok := parseHelp("flag", help(t, "fibgated"))["--version"]; !ok {
		t.Error("fibgated --help does not list --version")
	}
}
