// Package probe measures what a data plane loses: it sends numbered UDP
// probes from one network namespace to addresses that live in others, and
// records which namespace received each one, so a probe that arrives
// nowhere counts as lost. The blackhole measurement (e2e TestBlackhole) and
// `fiblab probe`, which shows the loss live while someone injects a
// failure, share it.
package probe
