package clab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fibgate/fibgate/internal/spawn"
)

// Options say where a lab's state lives and what runs its nodes.
type Options struct {
	// StateDir holds the lab's files, logs, FRR sockets and state.json;
	// default /run/fibgate-lab/NAME.
	StateDir string
	// Prefix starts every namespace name; default "NAME-".
	Prefix string
	// Bin is put first on the PATH of cmd nodes: fibgate's binaries and
	// gobgpd.
	Bin string
	// KillWithParent ends the lab's processes when the process that
	// started them dies (tests); `fiblab up` leaves them running.
	KillWithParent bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Lab is a running lab.
type Lab struct {
	Topo  *Topology
	State State
	log   io.Writer
	waits []chan struct{}
}

// State is what Down needs to take a lab apart, kept in state.json so a
// later process (`fiblab down`) can.
type State struct {
	Name       string            `json:"name"`
	Dir        string            `json:"dir"`
	Namespaces map[string]string `json:"namespaces"` // node -> netns
	Procs      []Proc            `json:"procs"`
	Started    time.Time         `json:"started"`
}

// Proc is a process of a node, the leader of its own session.
type Proc struct {
	Node string `json:"node"`
	Name string `json:"name"`
	Pid  int    `json:"pid"`
	Log  string `json:"log"`
}

// stateRoot holds the labs' default state directories.
const stateRoot = "/run/fibgate-lab"

// DefaultStateDir is where a lab's state lives unless Options say otherwise.
func DefaultStateDir(name string) string { return filepath.Join(stateRoot, name) }

// ErrNotUp is DownDir's answer when dir holds no lab: taking a lab down
// twice, or one that never came up, is not a failure (`make lab-down` is
// safe to repeat), so callers report it and exit 0.
var ErrNotUp = errors.New("no lab is up")

// Up builds the lab: namespaces, sysctls, links, the nodes' exec commands,
// then the nodes' daemons in file order. On failure whatever was built is
// taken down again.
func Up(ctx context.Context, t *Topology, o Options) (*Lab, error) {
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir(t.Name)
	}
	if o.Prefix == "" {
		o.Prefix = t.Name + "-"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if _, err := os.Stat(filepath.Join(o.StateDir, "state.json")); err == nil {
		return nil, fmt.Errorf("lab %s is already up (state in %s): take it down first", t.Name, o.StateDir)
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(o.StateDir, 0o755); err != nil { // FRR (user frr) walks through it
		return nil, err
	}
	l := &Lab{Topo: t, log: o.Log, State: State{Name: t.Name, Dir: o.StateDir, Namespaces: map[string]string{}, Started: time.Now()}}
	if err := l.up(ctx, o); err != nil {
		l.save()
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("taking the half-built lab down: %w", derr))
		}
		return nil, err
	}
	return l, nil
}

func (l *Lab) logf(format string, args ...any) { fmt.Fprintf(l.log, format+"\n", args...) }

func (l *Lab) up(ctx context.Context, o Options) error {
	t := l.Topo
	for _, n := range t.Nodes {
		if n.SharesWith() != "" {
			continue
		}
		ns := o.Prefix + n.Name
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add %s: %v: %s", ns, err, out)
		}
		l.State.Namespaces[n.Name] = ns
		l.save()
		if err := l.nsRun(n.Name, "ip", "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	for _, n := range t.Nodes {
		for _, k := range sortedKeys(n.Sysctls) {
			if err := l.nsRun(t.NamespaceOf(n).Name, "sysctl", "-q", "-w", k+"="+n.Sysctls[k]); err != nil {
				return err
			}
		}
	}
	for _, lk := range t.Links {
		a, b := l.State.Namespaces[lk.A.Node], l.State.Namespaces[lk.B.Node]
		if out, err := exec.Command("ip", "-n", a, "link", "add", lk.A.Iface, "type", "veth", "peer", "name", lk.B.Iface, "netns", b).CombinedOutput(); err != nil {
			return fmt.Errorf("link %s-%s: %v: %s", lk.A, lk.B, err, out)
		}
		for _, e := range []Endpoint{lk.A, lk.B} {
			if err := l.nsRun(e.Node, "ip", "link", "set", e.Iface, "up"); err != nil {
				return err
			}
		}
	}
	for _, n := range t.Nodes {
		for _, c := range n.Exec {
			if err := l.nsRun(t.NamespaceOf(n).Name, "sh", "-c", c); err != nil {
				return fmt.Errorf("node %s: exec %q: %w", n.Name, c, err)
			}
		}
	}
	for _, n := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		dir := l.NodeDir(n.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		paths, err := l.materialize(n)
		if err != nil {
			return err
		}
		if n.FRR() {
			err = l.startFRR(ctx, n, paths, o)
		} else {
			cmd := translate(n.Cmd, paths)
			_, err = l.start(n, "cmd", o, "sh", "-c", cmd)
			l.logf("%-16s %s", n.Name, cmd)
		}
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// materialize copies the node's bound files into its directory with
// container paths mapped to host paths, and returns that mapping.
func (l *Lab) materialize(n *Node) (map[string]string, error) {
	dir := l.NodeDir(n.Name)
	paths := map[string]string{}
	for _, b := range n.Binds {
		h := strings.ReplaceAll(b.Host, "__clabNodeDir__", dir)
		if strings.HasPrefix(b.Host, "__clabNodeDir__") {
			if err := os.MkdirAll(h, 0o755); err != nil {
				return nil, err
			}
			paths[b.Container] = h
			continue
		}
		paths[b.Container] = filepath.Join(dir, "files", strings.TrimPrefix(b.Container, "/"))
	}
	for _, b := range n.Binds {
		if strings.HasPrefix(b.Host, "__clabNodeDir__") {
			continue
		}
		text, err := os.ReadFile(b.Host)
		if err != nil {
			return nil, fmt.Errorf("bind %s: %w", b.Host, err)
		}
		dst := paths[b.Container]
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, []byte(translate(string(text), paths)), 0o644); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// translate replaces container paths by host paths in one pass (a host
// path is never translated again), longest first.
func translate(s string, paths map[string]string) string {
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, k, paths[k])
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

func (l *Lab) startFRR(ctx context.Context, n *Node, paths map[string]string, o Options) error {
	conf, ok := paths["/etc/frr/frr.conf"]
	if !ok {
		return errors.New("FRR node without a bind for /etc/frr/frr.conf")
	}
	dir := filepath.Join(l.NodeDir(n.Name), "frr")
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("FRR's user: %w (apt-get install frr)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range []string{dir, conf} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	opts := map[string][]string{}
	if d, ok := paths["/etc/frr/daemons"]; ok {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		opts, err = daemonOptions(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("FRR daemons file %s: %w", d, err)
		}
	}
	common := []string{"-F", "traditional", "-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir, "-f", conf}
	args := func(daemon string) []string {
		a := append([]string{"/usr/lib/frr/" + daemon, "-i", filepath.Join(dir, daemon+".pid")}, common...)
		return append(a, opts[daemon]...)
	}
	if _, err := l.start(n, "zebra", o, args("zebra")...); err != nil {
		return err
	}
	if err := poll(ctx, 10*time.Second, func() error { _, err := os.Stat(filepath.Join(dir, "zserv.api")); return err }); err != nil {
		return fmt.Errorf("zebra did not start (see %s): %w", filepath.Join(l.NodeDir(n.Name), "zebra.log"), err)
	}
	if _, err := l.start(n, "bgpd", o, args("bgpd")...); err != nil {
		return err
	}
	if err := poll(ctx, 10*time.Second, func() error { _, err := l.Vtysh(n.Name, "show bgp summary json"); return err }); err != nil {
		return fmt.Errorf("bgpd did not answer (see %s): %w", filepath.Join(l.NodeDir(n.Name), "bgpd.log"), err)
	}
	l.logf("%-16s FRR zebra+bgpd, vtysh --vty_socket %s", n.Name, dir)
	return nil
}

// start runs argv in the node's namespace as the leader of a new session,
// output to NodeDir/name.log, and records it.
func (l *Lab) start(n *Node, name string, o Options, argv ...string) (int, error) {
	ns := l.State.Namespaces[l.Topo.NamespaceOf(n).Name]
	logPath := filepath.Join(l.NodeDir(n.Name), name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = l.NodeDir(n.Name)
	cmd.Env = append(os.Environ(), "PATH="+o.Bin+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := cmd.Start
	if o.KillWithParent {
		start = func() error { return spawn.Start(cmd) }
	}
	if err := start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	l.waits = append(l.waits, done)
	l.State.Procs = append(l.State.Procs, Proc{Node: n.Name, Name: name, Pid: cmd.Process.Pid, Log: logPath})
	l.save()
	return cmd.Process.Pid, nil
}

func (l *Lab) nsRun(node string, argv ...string) error {
	ns := l.State.Namespaces[node]
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %s: %v: %s", node, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NodeDir is the node's directory in the lab's state.
func (l *Lab) NodeDir(node string) string { return filepath.Join(l.State.Dir, node) }

// NS is the network namespace a node runs in.
func (l *Lab) NS(node string) string {
	n := l.Topo.Node(node)
	if n == nil {
		return ""
	}
	return l.State.Namespaces[l.Topo.NamespaceOf(n).Name]
}

// Vtysh runs commands on an FRR node.
func (l *Lab) Vtysh(node string, cmds ...string) (string, error) {
	args := []string{"--vty_socket", filepath.Join(l.NodeDir(node), "frr")}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh %v on %s: %v: %s", cmds, node, err, out)
	}
	return string(out), nil
}

func (l *Lab) save() {
	b, _ := json.MarshalIndent(l.State, "", "  ")
	_ = os.WriteFile(filepath.Join(l.State.Dir, "state.json"), b, 0o644)
}

// Down takes the lab apart: SIGTERM to every process (SIGKILL after 10 s),
// namespaces deleted, state removed.
func (l *Lab) Down() error {
	err := stop(l.State)
	for _, w := range l.waits {
		<-w
	}
	return err
}

// DownDir takes apart the lab whose state is in dir (`fiblab down`) and
// removes dir, and /run/fibgate-lab too once it holds no other lab. Without
// a lab in dir it returns an error matching ErrNotUp, after removing dir if
// it is empty (what is left of a lab that never came up); a directory with
// other files in it is left alone, it may not be a lab's.
func DownDir(dir string) error { return downDir(dir, stateRoot) }

func downDir(dir, root string) error {
	defer removeIfEmpty(filepath.Dir(filepath.Clean(dir)), root)
	s, err := ReadState(dir)
	if errors.Is(err, ErrNotUp) {
		_ = os.Remove(dir) // only when empty
		return err
	}
	if err != nil {
		return err
	}
	return stop(s)
}

// ReadState reads the state of the lab that is up in dir, for commands that
// work on a running lab (`fiblab down`, `fiblab probe`); without one it
// returns an error matching ErrNotUp.
func ReadState(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("%w: no state in %s", ErrNotUp, dir)
	}
	if err != nil {
		return s, fmt.Errorf("read lab state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(dir, "state.json"), err)
	}
	return s, nil
}

// removeIfEmpty removes dir when it is want and holds nothing.
func removeIfEmpty(dir, want string) {
	if filepath.Clean(dir) == filepath.Clean(want) {
		_ = os.Remove(dir) // fails on a directory that is not empty
	}
}

func stop(s State) error {
	var errs []error
	procs := slices.Clone(s.Procs)
	slices.Reverse(procs) // daemons that depend on others go first
	for _, p := range procs {
		_ = syscall.Kill(-p.Pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for alive(p.Pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // another process's children: polled with a deadline
		}
		if alive(p.Pid) {
			_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		}
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL) // anything left in its session
	}
	for _, ns := range s.Namespaces {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", ns, err, out))
		}
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
