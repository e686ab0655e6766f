// Package scale measures how long a leaf takes to pass a full Internet
// table from a BGP source to a BGP observer, with fibgate's gate and
// without it, side by side in one run on the same machine:
//
//	source (BIRD, AS 65010) ── leaf under test (AS 65001) ── observer (BIRD, AS 65020)
//
// The leaf is, in turn, gobgpd-ext gated at level hardware and at level
// fib, a stock gobgpd with fibgated, a stock gobgpd alone (the baseline),
// FRR with bgp suppress-fib-pending (the anchor, which installs into the
// kernel too), and gobgpd-ext originating the table from static kernel
// routes. `make bench-scale` (TestScaleBench, build tag scale) writes
// docs/scale.md and docs/scale.svg; TestScaleRatio, which runs in CI,
// holds the gated leaf to a bounded slowdown against stock gobgpd.
// `make bench-churn` (TestSteadyChurn, build tag scale) churns the loaded
// table at a steady rate, with gobgpds as source and observer, and times
// every change end to end and inside the gate; it writes its own section
// of docs/scale.md.
package scale
