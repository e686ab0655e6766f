//go:build race

package fib

// raceEnabled shortens the long property tests under the race detector,
// which slows them about twentyfold; the plain run keeps the full length.
const raceEnabled = true
