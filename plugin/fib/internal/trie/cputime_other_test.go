//go:build !unix

package trie

import "time"

// cpuTime is unavailable here; see cputime_unix_test.go.
func cpuTime() (time.Duration, bool) { return 0, false }
