// Package clab builds a containerlab topology from network namespaces and
// veth pairs on a plain Linux machine, so the labs users deploy with
// containerlab run the same way in CI and on a laptop without Docker. It
// understands the subset of the format fibgate's labs use: linux nodes
// with an image, binds, cmd, exec, sysctls and network-mode
// container:NODE, and point-to-point links.
//
// Nodes are run by what their image is: an FRR image starts Debian's
// zebra and bgpd with the bound frr.conf and the options a bound
// /etc/frr/daemons gives them; any other image runs its cmd in a shell,
// with fibgate's binaries (and gobgpd's) on the PATH. Container
// paths of binds are mapped to the files' host paths in cmd and in the
// bound files' text, so the startup configs are the lab's own files.
package clab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Topology is a parsed .clab.yml.
type Topology struct {
	Name string
	// Dir is the directory of the file: relative binds start there.
	Dir   string
	Nodes []*Node // in file order
	Links []Link
}

// Node is one lab node.
type Node struct {
	Name        string
	Kind        string
	Image       string
	Binds       []Bind
	Cmd         string
	Exec        []string
	Sysctls     map[string]string
	NetworkMode string // "container:NODE" shares NODE's namespace
}

// Bind is a file of the lab mounted into a node.
type Bind struct {
	Host      string // absolute; may contain __clabNodeDir__
	Container string
}

// Link joins two interfaces.
type Link struct {
	A, B Endpoint
}

// Endpoint is node:interface.
type Endpoint struct {
	Node, Iface string
}

func (e Endpoint) String() string { return e.Node + ":" + e.Iface }

// FRR reports whether the node runs FRR (zebra and bgpd).
func (n *Node) FRR() bool { return strings.Contains(n.Image, "frr") }

// SharesWith names the node whose namespace this one joins, or "".
func (n *Node) SharesWith() string {
	s, ok := strings.CutPrefix(n.NetworkMode, "container:")
	if !ok {
		return ""
	}
	return s
}

type fileNode struct {
	Kind        string            `yaml:"kind"`
	Image       string            `yaml:"image"`
	Binds       []string          `yaml:"binds"`
	Cmd         string            `yaml:"cmd"`
	Exec        []string          `yaml:"exec"`
	Sysctls     map[string]string `yaml:"sysctls"`
	NetworkMode string            `yaml:"network-mode"`
}

type file struct {
	Name     string `yaml:"name"`
	Topology struct {
		Kinds map[string]fileNode  `yaml:"kinds"`
		Nodes map[string]*fileNode `yaml:"nodes"`
		Links []struct {
			Endpoints []string `yaml:"endpoints"`
		} `yaml:"links"`
	} `yaml:"topology"`
}

var nodeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

// Load reads a .clab.yml.
func Load(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	t, err := Parse(b, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse reads a topology whose relative binds start at dir. Node order is
// the file's, so start-up follows it.
func Parse(b []byte, dir string) (*Topology, error) {
	var f file
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	var order yaml.Node
	if err := yaml.Unmarshal(b, &order); err != nil {
		return nil, err
	}
	if !nodeName.MatchString(f.Name) {
		return nil, fmt.Errorf("name %q: want a short lower-case name", f.Name)
	}
	t := &Topology{Name: f.Name, Dir: dir}
	for _, name := range nodeOrder(&order) {
		fn := f.Topology.Nodes[name]
		if fn == nil {
			fn = &fileNode{}
		}
		if !nodeName.MatchString(name) {
			return nil, fmt.Errorf("node %q: want a short lower-case name", name)
		}
		n := &Node{Name: name, Kind: fn.Kind, Image: fn.Image, Cmd: fn.Cmd, Exec: fn.Exec, NetworkMode: fn.NetworkMode, Sysctls: map[string]string{}}
		if n.Kind != "linux" {
			return nil, fmt.Errorf("node %s: kind %q: only linux nodes are supported", name, n.Kind)
		}
		def := f.Topology.Kinds[n.Kind]
		if n.Image == "" {
			n.Image = def.Image
		}
		for k, v := range def.Sysctls {
			n.Sysctls[k] = v
		}
		for k, v := range fn.Sysctls {
			n.Sysctls[k] = v
		}
		for _, s := range append(slices.Clone(def.Binds), fn.Binds...) {
			h, c, ok := strings.Cut(s, ":")
			if !ok || !strings.HasPrefix(c, "/") {
				return nil, fmt.Errorf("node %s: bind %q: want HOST:/container/path", name, s)
			}
			c, _, _ = strings.Cut(c, ":") // drop :ro
			if !filepath.IsAbs(h) && !strings.HasPrefix(h, "__clabNodeDir__") {
				h = filepath.Join(dir, h)
			}
			n.Binds = append(n.Binds, Bind{Host: h, Container: c})
		}
		if !n.FRR() && n.Cmd == "" {
			return nil, fmt.Errorf("node %s: image %q is not FRR and has no cmd: nothing would run", name, n.Image)
		}
		t.Nodes = append(t.Nodes, n)
	}
	for _, n := range t.Nodes {
		if s := n.SharesWith(); s != "" {
			p := t.Node(s)
			if p == nil || p.SharesWith() != "" {
				return nil, fmt.Errorf("node %s: network-mode %q: no such node with its own namespace", n.Name, n.NetworkMode)
			}
		}
	}
	seen := map[string]bool{}
	for i, l := range f.Topology.Links {
		if len(l.Endpoints) != 2 {
			return nil, fmt.Errorf("link %d: want two endpoints", i+1)
		}
		var eps [2]Endpoint
		for j, e := range l.Endpoints {
			node, iface, ok := strings.Cut(e, ":")
			n := t.Node(node)
			if !ok || n == nil || iface == "" || len(iface) > 15 {
				return nil, fmt.Errorf("link %d: endpoint %q: want NODE:IFACE of a node of the lab", i+1, e)
			}
			if n.SharesWith() != "" {
				return nil, fmt.Errorf("link %d: endpoint %q: node %s shares %s's namespace; link that one", i+1, e, node, n.SharesWith())
			}
			if seen[e] {
				return nil, fmt.Errorf("link %d: endpoint %q is used twice", i+1, e)
			}
			seen[e] = true
			eps[j] = Endpoint{node, iface}
		}
		t.Links = append(t.Links, Link{eps[0], eps[1]})
	}
	if len(t.Nodes) == 0 {
		return nil, errors.New("no nodes")
	}
	return t, nil
}

// nodeOrder lists topology.nodes' keys in file order (Go maps forget it).
func nodeOrder(doc *yaml.Node) []string {
	find := func(m *yaml.Node, key string) *yaml.Node {
		if m == nil || m.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		return nil
	}
	if len(doc.Content) == 0 {
		return nil
	}
	nodes := find(find(doc.Content[0], "topology"), "nodes")
	var out []string
	if nodes != nil {
		for i := 0; i < len(nodes.Content); i += 2 {
			out = append(out, nodes.Content[i].Value)
		}
	}
	return out
}

// Node returns the named node or nil.
func (t *Topology) Node(name string) *Node {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// NamespaceOf is the node's own node: itself, or the one it shares with.
func (t *Topology) NamespaceOf(n *Node) *Node {
	if s := n.SharesWith(); s != "" {
		return t.Node(s)
	}
	return n
}
