package sim

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// Mode selects how the simulated ASIC classifies a programmed route, that
// is which of trap and offload it reports, so a lab can reproduce the flags
// of the driver its real switches use.
type Mode string

const (
	// ModeTrap behaves like netdevsim: every programmed route gets trap,
	// whatever its type or tos (kernel-semantics behaviour 54).
	ModeTrap Mode = "trap"
	// ModeSpectrum behaves like mlxsw (behaviours 61-65): local, broadcast,
	// unreachable and prohibit routes trap, blackholes offload, IPv4 routes
	// with tos≠0 trap, a gateway route traps until a neighbour of its
	// nexthops is resolved and then offloads, device routes offload.
	ModeSpectrum Mode = "spectrum"
)

// CapacityMode is what the hardware does with a route that does not fit its
// table, as drivers differ there.
type CapacityMode string

const (
	// CapacityFlag keeps the route in the kernel and flags it
	// offload_failed; it is programmed once room frees (mlxsw-like).
	CapacityFlag CapacityMode = "flag"
	// CapacityRefuse refuses the route before the kernel installs it, as
	// netdevsim's FIB resource does (kernel-semantics behaviours 51, 52):
	// the writer gets EPERM "sim: Exceeded number of supported fib entries" and
	// the kernel never has the route. The sim refuses on the FIB
	// installer's path (it implements kernel.Vetoer); see admit.go.
	CapacityRefuse CapacityMode = "refuse"
)

// Capacity is the number of routes the hardware table holds per address
// family and per kind, as an ASIC has separate resources for host entries
// (/32, /128) and LPM prefixes. 0 means unlimited.
type Capacity struct {
	IPv4Host   int // /32 routes (local and broadcast addresses count)
	IPv4Prefix int // shorter IPv4 prefixes
	IPv6Host   int // /128 routes
	IPv6Prefix int // shorter IPv6 prefixes
}

// Config describes the simulated ASIC. Start from DefaultConfig and change
// what the lab needs; New rejects an invalid Config with Validate's error.
//
// Defaults:
//
//	Mode            trap         netdevsim-like
//	Capacity        0 (all)      unlimited
//	CapacityMode    flag         a route that does not fit gets offload_failed
//	Latency         1ms          netdevsim programs from a work queue, ≥1 ms after the event
//	Jitter          0            added uniformly in [0, Jitter]
//	Rate            0            routes/s, 0 = unlimited
//	Batch           64           routes programmed per hardware batch
//	Tables          254, 255     main and local, the tables switchdev drivers offload
//	FailProbability 0            chance that programming a route fails
//	Seed            1            seeds jitter and random failures, so runs repeat
//	Ports           none         data ports whose incoming traffic uses the hardware table
//	MirrorTable     4242         kernel table that holds what the hardware forwards
//	RulePriority    1000         priority of the `ip rule iif PORT lookup MirrorTable`
//	Warm            false        the hardware starts empty and is emptied at stop
type Config struct {
	// Mode is the classifier: ModeTrap or ModeSpectrum.
	Mode Mode
	// Capacity limits the hardware table; what happens to a route that
	// does not fit is CapacityMode's choice.
	Capacity Capacity
	// CapacityMode is CapacityFlag (offload_failed, programmed when a
	// delete frees room) or CapacityRefuse (the write is refused).
	CapacityMode CapacityMode
	// Latency is the fixed delay between the driver event and programming.
	Latency time.Duration
	// Jitter adds a uniformly random delay in [0, Jitter] to each program.
	Jitter time.Duration
	// Rate limits programming to this many routes per second (0: unlimited).
	Rate int
	// Batch is how many routes the hardware programs at once; with a Rate
	// a batch of Batch routes goes every Batch/Rate seconds.
	Batch int
	// Tables are the kernel routing tables the ASIC programs.
	Tables []uint32
	// FailProbability makes each programming fail with this probability
	// (0 to 1), to exercise the gate's failure handling.
	FailProbability float64
	// Seed seeds the random source of Jitter and FailProbability.
	Seed uint64
	// Ports are the data ports: traffic arriving on them is routed by what
	// the hardware holds (MirrorTable), not by the kernel's main table.
	Ports []string
	// MirrorTable is the kernel table that mirrors the hardware table; it
	// must be none of Tables nor a reserved table (0, 253-255).
	MirrorTable uint32
	// RulePriority is the priority of the per-port rules; it must lie
	// between the local rule (0) and the main rule (32766).
	RulePriority uint32
	// Warm makes the hardware outlive the sim, as a switch ASIC keeps
	// forwarding while its control plane restarts (a warm reboot, or a
	// graceful restart of the routing daemon): Run leaves the mirror table
	// and its rules in place when it stops, and a sim that starts finding
	// them takes each route the kernel holds that its mirror table has
	// exactly as already programmed, without the latency. Mirror routes
	// that no kernel route claims by the end of the listener's first dump
	// are removed. Without forwarding it changes nothing.
	Warm bool
}

// DefaultConfig returns the configuration documented on Config.
func DefaultConfig() Config {
	return Config{
		Mode:         ModeTrap,
		CapacityMode: CapacityFlag,
		Latency:      time.Millisecond,
		Batch:        64,
		Tables:       []uint32{fib.TableMain, fib.TableLocal},
		Seed:         1,
		MirrorTable:  4242,
		RulePriority: 1000,
	}
}

// ConfigError is one invalid field of a Config; Validate joins them so a
// user sees every mistake at once, and callers can map them with errors.As
// to an invalid-argument answer.
type ConfigError struct {
	Field  string // the Config field, dotted for nested ones: "Capacity.IPv4Host"
	Value  any    // the rejected value
	Reason string // what a valid value looks like
}

// Error renders one line naming the field, for a user fixing a config file.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("sim config: %s %v: %s", e.Field, e.Value, e.Reason)
}

// Validate checks every field and returns all problems joined, each a
// *ConfigError naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, v any, reason string) {
		errs = append(errs, &ConfigError{Field: field, Value: v, Reason: reason})
	}
	if c.Mode != ModeTrap && c.Mode != ModeSpectrum {
		bad("Mode", fmt.Sprintf("%q", c.Mode), `want "trap" or "spectrum"`)
	}
	if c.CapacityMode != CapacityFlag && c.CapacityMode != CapacityRefuse {
		bad("CapacityMode", fmt.Sprintf("%q", c.CapacityMode), `want "flag" or "refuse"`)
	}
	errs = append(errs, c.Capacity.validate()...)
	if err := validateLatency(c.Latency, c.Jitter); err != nil {
		errs = append(errs, err)
	}
	if err := validateRate(c.Rate, c.Batch); err != nil {
		errs = append(errs, err)
	}
	if err := validateProbability(c.FailProbability); err != nil {
		errs = append(errs, err)
	}
	if c.MirrorTable == 0 || c.MirrorTable >= fib.TableDefault && c.MirrorTable <= fib.TableLocal {
		bad("MirrorTable", c.MirrorTable, "must not be 0 or a reserved table (253 default, 254 main, 255 local)")
	}
	if len(c.Tables) == 0 {
		bad("Tables", "[]", "list at least one table to program (254 is main)")
	}
	seen := map[uint32]bool{}
	for _, t := range c.Tables {
		switch {
		case t == 0:
			bad("Tables", t, "table 0 is not a routing table")
		case t == c.MirrorTable:
			bad("Tables", t, "the mirror table must not be programmed (it holds the sim's own routes)")
		case seen[t]:
			bad("Tables", t, "listed twice")
		}
		seen[t] = true
	}
	if c.RulePriority == 0 || c.RulePriority >= 32766 {
		bad("RulePriority", c.RulePriority, "must be 1-32765: after the local rule (0), before the main rule (32766)")
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		if p == "" || len(p) > 15 || strings.ContainsAny(p, "/ \t\n:") || p == "." || p == ".." {
			bad("Ports", fmt.Sprintf("%q", p), "not an interface name (1-15 characters, no '/', ':' or spaces)")
		}
		if ports[p] {
			bad("Ports", fmt.Sprintf("%q", p), "listed twice")
		}
		ports[p] = true
	}
	return errors.Join(errs...)
}

func (c Capacity) validate() []error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{{"IPv4Host", c.IPv4Host}, {"IPv4Prefix", c.IPv4Prefix}, {"IPv6Host", c.IPv6Host}, {"IPv6Prefix", c.IPv6Prefix}} {
		if f.v < 0 {
			errs = append(errs, &ConfigError{Field: "Capacity." + f.name, Value: f.v, Reason: "must not be negative (0 = unlimited)"})
		}
	}
	return errs
}

func validateLatency(fixed, jitter time.Duration) error {
	var errs []error
	if fixed < 0 {
		errs = append(errs, &ConfigError{Field: "Latency", Value: fixed, Reason: "must not be negative"})
	}
	if jitter < 0 {
		errs = append(errs, &ConfigError{Field: "Jitter", Value: jitter, Reason: "must not be negative"})
	}
	return errors.Join(errs...)
}

func validateRate(rate, batch int) error {
	var errs []error
	if rate < 0 {
		errs = append(errs, &ConfigError{Field: "Rate", Value: rate, Reason: "must not be negative (0 = unlimited)"})
	}
	if batch < 1 || batch > 1<<20 {
		errs = append(errs, &ConfigError{Field: "Batch", Value: batch, Reason: "must be 1-1048576"})
	}
	return errors.Join(errs...)
}

func validateProbability(p float64) error {
	if math.IsNaN(p) || p < 0 || p > 1 {
		return &ConfigError{Field: "FailProbability", Value: p, Reason: "must be between 0 and 1"}
	}
	return nil
}

// class indexes the hardware resource a route uses: family × host or prefix.
type class uint8

const (
	classIPv4Prefix class = iota
	classIPv4Host
	classIPv6Prefix
	classIPv6Host
	numClasses
)

func classOf(p netip.Prefix) class {
	host := p.Bits() == p.Addr().BitLen()
	switch {
	case p.Addr().Is4() && host:
		return classIPv4Host
	case p.Addr().Is4():
		return classIPv4Prefix
	case host:
		return classIPv6Host
	}
	return classIPv6Prefix
}

// limit returns the capacity of a class, 0 for unlimited.
func (c Capacity) limit(cl class) int {
	return [numClasses]int{c.IPv4Prefix, c.IPv4Host, c.IPv6Prefix, c.IPv6Host}[cl]
}

func capacityOf(n [numClasses]int) Capacity {
	return Capacity{IPv4Prefix: n[classIPv4Prefix], IPv4Host: n[classIPv4Host], IPv6Prefix: n[classIPv6Prefix], IPv6Host: n[classIPv6Host]}
}
