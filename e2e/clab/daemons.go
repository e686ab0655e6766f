package clab

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// daemonOptions reads the <daemon>_options lines of an FRR daemons file
// (/etc/frr/daemons, a shell fragment of NAME=VALUE lines), so the lab runs
// zebra and bgpd with the options the containerlab image would: a lab's
// neighbours behave alike in both. An option such as zebra's
// --v6-rr-semantics changes what the data plane sees (one IPv6 route
// replace instead of a delete and an add), which a blackhole measurement
// counts.
func daemonOptions(r io.Reader) (map[string][]string, error) {
	opts := map[string][]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not NAME=VALUE", n, line)
		}
		daemon, ok := strings.CutSuffix(name, "_options")
		if !ok {
			continue
		}
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		if strings.ContainsAny(value, `"'$\`+"`") {
			return nil, fmt.Errorf("line %d: %s: only words, not the shell's quoting or expansion, are understood", n, name)
		}
		opts[daemon] = strings.Fields(value)
	}
	return opts, sc.Err()
}
