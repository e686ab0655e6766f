//go:build !race

package gobgp

// raceEnabled: see race_on_test.go.
const raceEnabled = false
