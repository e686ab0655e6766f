package fib

import (
	"fmt"
	"strings"
)

// Hardware-state bits as the kernel encodes them. They are exported so that
// decoders and encoders at the edges (netlink, the API) convert in one place.
const (
	// RTMFOffload is rtm_flags' RTM_F_OFFLOAD: the route forwards in hardware.
	RTMFOffload uint32 = 0x4000
	// RTMFTrap is rtm_flags' RTM_F_TRAP: the route is in hardware but traps to the CPU.
	RTMFTrap uint32 = 0x8000
	// RTMFOffloadFailed is rtm_flags' RTM_F_OFFLOAD_FAILED: the driver tried and failed.
	RTMFOffloadFailed uint32 = 0x20000000

	// RTNHFOffload is RTNH_F_OFFLOAD in rtnh_flags (and in rtm_flags of a single-path route).
	RTNHFOffload uint32 = 8
	// RTNHFTrap is RTNH_F_TRAP in rtnh_flags.
	RTNHFTrap uint32 = 64
	// RTNHFDead and RTNHFLinkDown are kernel-owned nexthop states that, like
	// the hardware bits, do not take part in route identity (RTNH_COMPARE_MASK).
	RTNHFDead     uint32 = 1
	RTNHFLinkDown uint32 = 16
	// RTNHFOnlink is the only nexthop flag user space may set.
	RTNHFOnlink uint32 = 4

	// RTNHCompareMask lists the rtnh flags the kernel ignores when it compares
	// nexthops, so hardware state never changes which route a message names.
	RTNHCompareMask = RTNHFDead | RTNHFLinkDown | RTNHFOffload | RTNHFTrap
)

// HWFlags is the hardware state of a route or of one nexthop. The three bits
// are independent in the kernel (a driver may set any combination), so they are
// kept as a set rather than an enum; the gate decides what a combination means.
type HWFlags uint8

const (
	// Offload means the hardware forwards the route itself.
	Offload HWFlags = 1 << iota
	// Trap means the route is in hardware but its packets go to the CPU
	// (host and local routes, unresolved neighbours, netdevsim).
	Trap
	// OffloadFailed means the driver could not program the route (table full,
	// unsupported); traffic for it is handled in software or dropped.
	OffloadFailed
)

// flagNames is in bit order; it is what iproute2 prints without the "rt_" prefix
// and what fibgate's JSON uses.
var flagNames = [...]string{"offload", "trap", "offload_failed"}

// FlagsFromRTM extracts the route hardware state from rtm_flags. The single-path
// RTNH_F_OFFLOAD/RTNH_F_TRAP bits that share rtm_flags describe the nexthop and
// are read with FlagsFromRTNH.
func FlagsFromRTM(rtmFlags uint32) HWFlags {
	var f HWFlags
	if rtmFlags&RTMFOffload != 0 {
		f |= Offload
	}
	if rtmFlags&RTMFTrap != 0 {
		f |= Trap
	}
	if rtmFlags&RTMFOffloadFailed != 0 {
		f |= OffloadFailed
	}
	return f
}

// RTM encodes f as rtm_flags bits, the inverse of FlagsFromRTM.
func (f HWFlags) RTM() uint32 {
	var v uint32
	if f&Offload != 0 {
		v |= RTMFOffload
	}
	if f&Trap != 0 {
		v |= RTMFTrap
	}
	if f&OffloadFailed != 0 {
		v |= RTMFOffloadFailed
	}
	return v
}

// FlagsFromRTNH extracts nexthop hardware state from rtnh_flags. Nexthops have
// no failed bit in the uAPI.
func FlagsFromRTNH(rtnhFlags uint32) HWFlags {
	var f HWFlags
	if rtnhFlags&RTNHFOffload != 0 {
		f |= Offload
	}
	if rtnhFlags&RTNHFTrap != 0 {
		f |= Trap
	}
	return f
}

// RTNH encodes the offload and trap bits of f as rtnh_flags.
func (f HWFlags) RTNH() uint32 {
	var v uint32
	if f&Offload != 0 {
		v |= RTNHFOffload
	}
	if f&Trap != 0 {
		v |= RTNHFTrap
	}
	return v
}

// InHardware reports whether the hardware holds the route (offloaded or
// trapping) and did not report a failure.
func (f HWFlags) InHardware() bool {
	return f&(Offload|Trap) != 0 && f&OffloadFailed == 0
}

// Names returns the set bits as stable lower-case words, for logs and JSON.
// It never returns nil, so JSON shows [] rather than null.
func (f HWFlags) Names() []string {
	names := make([]string, 0, 3)
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return names
}

// String renders the flags like iproute2 does, without the "rt_" prefix,
// separated by commas; "none" when empty.
func (f HWFlags) String() string {
	if f == 0 {
		return "none"
	}
	return strings.Join(f.Names(), ",")
}

// ParseFlags is the inverse of Names; it accepts the iproute2 spelling with
// "rt_" too, so users can paste what `ip route` prints.
func ParseFlags(names ...string) (HWFlags, error) {
	var f HWFlags
	for _, n := range names {
		n = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(n)), "rt_")
		ok := false
		for i, fn := range flagNames {
			if n == fn {
				f |= 1 << i
				ok = true
			}
		}
		if !ok {
			return 0, fmt.Errorf("unknown hardware flag %q (want offload, trap or offload_failed)", n)
		}
	}
	return f, nil
}
