package clab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TryItMarker introduces, in a lab's README.md, the fenced block of
// commands that `fiblab up` prints once the lab is up. The README is where
// a user reads them, so printing them from there keeps the two the same;
// the e2e tests run every one of them against a lab.
const TryItMarker = "<!-- fiblab up prints the next block -->"

// TryIt returns the lines of the fenced block that follows TryItMarker in
// the README.md beside the topology file, comments included, and false
// when the lab has no such README or block.
func (t *Topology) TryIt() ([]string, bool, error) {
	path := filepath.Join(t.Dir, "README.md")
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	var lines []string
	marked, in := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case !marked:
			marked = strings.TrimSpace(l) == TryItMarker
		case !in && strings.HasPrefix(l, "```"):
			in = true
		case in && strings.HasPrefix(l, "```"):
			return lines, true, nil
		case in:
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	if marked {
		return nil, false, fmt.Errorf("%s: no complete fenced block after %s", path, TryItMarker)
	}
	return nil, false, nil
}
