//go:build race

package trie

// raceEnabled lets the heaviest tests shrink under the race detector, which
// is roughly ten times slower, so `go test -race` stays within a minute.
const raceEnabled = true
