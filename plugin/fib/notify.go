package fib

import "fmt"

// NotifyMode is the value of net.ipv{4,6}.fib_notify_on_flag_change. It only
// decides which hardware-flag changes reach user space; the kernel stores the
// flags (and dumps show them) in every mode.
type NotifyMode uint8

const (
	// NotifyOff (0, the kernel default) sends no message when flags change.
	NotifyOff NotifyMode = 0
	// NotifyAll (1) sends RTM_NEWROUTE on every change of offload, trap or offload_failed.
	NotifyAll NotifyMode = 1
	// NotifyFailed (2) sends RTM_NEWROUTE only when offload_failed changes.
	NotifyFailed NotifyMode = 2
)

// ParseNotifyMode validates a sysctl value the way the kernel does (0..2).
func ParseNotifyMode(v int) (NotifyMode, error) {
	if v < 0 || v > 2 {
		return 0, fmt.Errorf("fib_notify_on_flag_change %d out of range: want 0 (off), 1 (all changes) or 2 (offload_failed changes)", v)
	}
	return NotifyMode(v), nil
}

// Unheard says what a reader of route notifications misses at mode m,
// "" at NotifyAll: at NotifyOff every hardware flag change, at
// NotifyFailed every offload and trap (only offload_failed is announced),
// so a gate waiting for hardware would confirm nothing. The daemons'
// warnings and refusals say it in these words.
func (m NotifyMode) Unheard() string {
	switch m {
	case NotifyAll:
		return ""
	case NotifyFailed:
		return "only offload failures are announced, never a route's offload or trap"
	}
	return "hardware flag changes are not announced"
}

// FlagChangeNotifies is the kernel's rule (fib_alias_hw_flags_set,
// fib6_info_hw_flags_set) as a pure function: whether a driver changing a
// linked route's flags from old to new produces an RTM_NEWROUTE. Setting the
// flags already present never notifies.
func FlagChangeNotifies(mode NotifyMode, old, new HWFlags) bool {
	if old == new {
		return false
	}
	switch mode {
	case NotifyAll:
		return true
	case NotifyFailed:
		return old&OffloadFailed != new&OffloadFailed
	}
	return false
}

// MsgType is the rtnetlink message type a route change produces.
type MsgType uint8

const (
	// NewRoute is RTM_NEWROUTE: an add, a replace, or (nlflags 0) a flag change.
	NewRoute MsgType = iota + 1
	// DelRoute is RTM_DELROUTE.
	DelRoute
)

func (t MsgType) String() string {
	if t == DelRoute {
		return "DELROUTE"
	}
	return "NEWROUTE"
}

// NLFlags are nlmsghdr flags with their netlink values, so they convert from
// and to the wire without a table. They describe how a route was inserted.
type NLFlags uint16

// Netlink request/notification flags that matter for routes.
const (
	NLMReplace NLFlags = 0x100
	NLMExcl    NLFlags = 0x200
	NLMCreate  NLFlags = 0x400
	NLMAppend  NLFlags = 0x800
)

func (f NLFlags) String() string {
	if f == 0 {
		return "0"
	}
	s := ""
	for _, b := range []struct {
		f NLFlags
		n string
	}{{NLMReplace, "REPLACE"}, {NLMExcl, "EXCL"}, {NLMCreate, "CREATE"}, {NLMAppend, "APPEND"}} {
		if f&b.f != 0 {
			if s != "" {
				s += "|"
			}
			s += b.n
		}
	}
	return s
}

// Message is what the model tells user space, mirroring an rtnetlink
// notification. A flag change is a NewRoute with NLFlags 0.
type Message struct {
	Type    MsgType
	NLFlags NLFlags
	Route   Route
}

func (m Message) String() string {
	return fmt.Sprintf("%s nlflags=%s %s", m.Type, m.NLFlags, m.Route.String())
}

// DriverEventKind is what the FIB notifier chain tells a driver.
type DriverEventKind uint8

const (
	// DriverReplace says Route is now the forwarding route of its prefix;
	// whatever the driver had for the prefix is replaced.
	DriverReplace DriverEventKind = iota + 1
	// DriverAppend adds Route's nexthops to the IPv6 ECMP route the driver has.
	DriverAppend
	// DriverDel says the prefix has no route left (or, for IPv6, that these
	// siblings left the forwarding route).
	DriverDel
)

func (k DriverEventKind) String() string {
	switch k {
	case DriverReplace:
		return "REPLACE"
	case DriverAppend:
		return "APPEND"
	case DriverDel:
		return "DEL"
	}
	return "?"
}

// DriverEvent is one FIB notifier call.
type DriverEvent struct {
	Kind  DriverEventKind
	Route Route
}

// Driver is the switchdev side of the FIB, as netdevsim or mlxsw see it: it is
// told synchronously which route forwards for each prefix and may veto an add
// (table full) by returning an error. It reports hardware state later with
// FIB.SetFlags. A Driver must not call back into the FIB from Event, and
// must not write the event route's next hops, which may be the model's own
// list (kernel.Listener hands it over uncopied). It may keep them as they
// are: a stored list is never written.
type Driver interface {
	Event(ev DriverEvent) error
}
