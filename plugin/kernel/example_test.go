package kernel_test

import (
	"fmt"
	"net/netip"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// A driver that has trapped a route makes the kernel send an RTM_NEWROUTE
// with nlmsg flags 0 and RTM_F_TRAP in rtm_flags (with
// fib_notify_on_flag_change=1). EncodeRoute builds that message here, as
// tests do on machines without such a driver; Decode is what a listener
// calls on every message a Subscription delivers.
func ExampleDecode() {
	msg := kernel.EncodeRoute(kernel.RouteMessage{
		Type: 24, // RTM_NEWROUTE
		Route: fib.Route{
			Table: fib.TableMain, Prefix: netip.MustParsePrefix("198.51.100.0/24"),
			Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Flags: fib.Trap,
			Nexthops: []fib.Nexthop{{Gateway: netip.MustParseAddr("192.0.2.2"), LinkIndex: 3}},
		},
	})
	v, err := kernel.Decode(msg)
	if err != nil {
		fmt.Println(err)
		return
	}
	switch m := v.(type) {
	case kernel.RouteMessage:
		fmt.Printf("rtm_flags %#x nlflags %d: %s in hardware=%v (%s)\n",
			m.RTMFlags, m.NLFlags, m.Route.Prefix, m.Route.Flags.InHardware(), m.Route.Flags)
	case kernel.LinkMessage, kernel.AddrMessage:
		// links and addresses going away flush routes silently
	}
	// Output: rtm_flags 0x8000 nlflags 0: 198.51.100.0/24 in hardware=true (trap)
}
