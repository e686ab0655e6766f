// Package fibtest ships a real Internet routing table (see README.md for
// its origin and licence) to the tests and benchmarks of every fibgate
// package, so full-table figures come from a plain clone and from one copy
// of the data and of the code that reads it.
package fibtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"net/netip"
	"sync"
)

//go:embed internet-prefixes.txt.gz
var internetGz []byte

// InternetTable returns the table's 1,062,046 prefixes (901,899 IPv4,
// 160,147 IPv6), masked and without duplicates, in file order. It parses
// once per process; callers share the slice and must not modify it.
func InternetTable() ([]netip.Prefix, error) { return loadInternet() }

var loadInternet = sync.OnceValues(func() ([]netip.Prefix, error) {
	z, err := gzip.NewReader(bytes.NewReader(internetGz))
	if err != nil {
		return nil, fmt.Errorf("read internet-prefixes.txt.gz: %w", err)
	}
	seen := make(map[netip.Prefix]bool, 1<<20)
	out := make([]netip.Prefix, 0, 1<<20)
	sc := bufio.NewScanner(z)
	for line := 1; sc.Scan(); line++ {
		p, err := netip.ParsePrefix(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("internet-prefixes.txt.gz line %d: %w", line, err)
		}
		if p = p.Masked(); !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read internet-prefixes.txt.gz: %w", err)
	}
	return out, nil
})
