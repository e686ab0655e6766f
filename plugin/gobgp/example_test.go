package gobgp_test

import (
	"context"
	"log"
	"log/slog"
	"net/netip"
	"time"

	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp"
)

// The sidecar mode: gate a stock gobgpd over its API. Guard runs for as
// long as the gate does, so a policy reload in gobgpd cannot leave it
// ungated for more than a guard interval.
func Example_sidecar() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sp, err := gobgp.DialClient("unix:///run/gobgpd/api.sock", gobgp.Config{
		// Gate the IPv4 and IPv6 unicast space (the default) and tag what
		// fibgate originates.
		Communities: []string{"65001:100"},
	}, gobgp.WithLogger(slog.Default()), gobgp.WithGuardInterval(100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer sp.Close(context.Background())
	if err := sp.Bootstrap(ctx); err != nil {
		log.Fatal(err)
	}
	go sp.Guard(ctx)

	// The hardware confirmed a learned route and a redistributed one.
	err = sp.Advertise(ctx, []gate.Advertisement{
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Origin: gate.Transit},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Origin: gate.Originated},
	})
	if err != nil {
		log.Print(err)
	}
}
