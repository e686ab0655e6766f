package clab

import (
	"path/filepath"
	"regexp"
	"strings"
)

// binWord is a path into ./bin at the start of a shell word.
var binWord = regexp.MustCompile(`(^|\s)bin/`)

// Localize rewrites the TryIt commands, which are written for a lab
// brought up by `sudo make lab` (state in DefaultStateDir, namespaces
// NAME-NODE, binaries in ./bin of the repository), for this lab: its state
// directory and namespaces, and the binaries in bin. With the defaults and
// bin being ./bin it changes nothing, so `make lab` prints the README's
// commands as they are.
func (l *Lab) Localize(lines []string, bin string) []string {
	name := l.Topo.Name
	defState, state := DefaultStateDir(name), filepath.Clean(l.State.Dir)
	prefix := name + "-"
	for node, ns := range l.State.Namespaces {
		prefix = strings.TrimSuffix(ns, node)
		break
	}
	cwd, _ := filepath.Abs(".")
	sameBin := filepath.Clean(bin) == filepath.Join(cwd, "bin") || filepath.Clean(bin) == "bin"
	out := make([]string, len(lines))
	for i, s := range lines {
		if !strings.HasPrefix(strings.TrimSpace(s), "#") {
			if state != defState {
				s = strings.ReplaceAll(s, defState, state)
				if j := strings.Index(s, "fiblab probe "); j >= 0 {
					s = s[:j] + "fiblab probe -state " + state + " " + s[j+len("fiblab probe "):]
				}
			}
			if prefix != name+"-" {
				s = strings.ReplaceAll(s, " "+name+"-", " "+prefix)
			}
			if !sameBin {
				s = binWord.ReplaceAllString(s, "${1}"+filepath.Clean(bin)+"/")
			}
		}
		out[i] = s
	}
	return out
}
