//go:build race

package gobgp

// raceEnabled: the race detector slows GoBGP's main loop and the Speaker
// several times over, so timing bounds measured without it (TestFenceWindow)
// are asserted with more room under it.
const raceEnabled = true
