//go:build !race

package trie

// raceEnabled: see race_on_test.go.
const raceEnabled = false
