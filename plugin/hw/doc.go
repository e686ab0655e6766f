// Package hw holds the hardware backends of the data plane: sim, the
// simulated ASIC, and external, for agents outside the kernel (SAI, P4,
// DPDK) that report over the API.
//
// Whatever programs the routes (a switchdev driver in the kernel, or one of
// these drivers outside it) reports hardware state the same way: as rtm_flags
// on the routes of the listener's kernel FIB model, announced per the
// namespace's fib_notify_on_flag_change. Backends outside the kernel attach
// to a *kernel.Listener with kernel.WithDriver and report through
// Listener.SetFlags. The gate therefore consumes one small interface,
// gate.Source, which the listener satisfies, and never learns which backend
// set a flag; the "kernel" backend is the listener alone.
package hw
