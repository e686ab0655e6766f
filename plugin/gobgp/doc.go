// Package gobgp is fibgate's BGP side on GoBGP v3: it makes GoBGP
// advertise a prefix only once the gate released it, and take it back on
// request. It satisfies gate.Speaker twice with one Speaker type: over
// GoBGP's gRPC API to a stock gobgpd (NewClient, DialClient: the sidecar
// mode) and in process over pkg/server (NewInProcess: gobgpd-ext). The
// GoBGP API types stay inside this package; callers see netip and
// gate.Advertisement.
//
// How the gate works in an unmodified GoBGP (see README.md for the
// measured recipe and its pitfalls):
//
//   - Bootstrap installs a global export policy first in the chain:
//     statement 0 rejects paths carrying the HOLD community, then one
//     statement per address family rejects the "held" prefix set, which
//     matches every prefix of the gated scope that is not released.
//     Nothing is accepted, so released prefixes still pass through the
//     user's export policies after it.
//   - Originated prefixes: released in the held set, then added as local
//     paths (AddPath); taken back through a HOLD path (below), because a
//     plain DeletePath would let a learned path of the same prefix out.
//   - Transit prefixes: released in the held set, then GoBGP must run
//     their export again. In process it is asked to, one operation for a
//     batch (the re-export, internal/reexport, when the binary's GoBGP is
//     the one it was written for); otherwise a HOLD path (LOCAL_PREF
//     2^32-1, HOLD community) is added and deleted, so that GoBGP re-runs
//     export for that prefix alone (the toggle). Taken back by adding the HOLD
//     path first (GoBGP withdraws the old best path it sees as sent), then
//     holding the prefix, then deleting the HOLD path.
//   - Guard (or Check) notices when a policy reload (SetPolicies, gobgpd's
//     SIGHUP) dropped the gate and re-installs it, fail-closed.
package gobgp
