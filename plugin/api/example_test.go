package api_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// Example wires the API the way a daemon whose hardware is driven by
// external agents does: the backend is the listener's driver, the tracker
// judges the listener's routes, and the server serves all three on the
// default unix socket until interrupted. (A daemon with the simulated ASIC
// passes api.WithSim(simctl.New(asic)) instead of api.WithAgents.)
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	agents := external.New(external.WithLogger(logger))
	listener := kernel.NewListener(kernel.WithDriver(agents), kernel.WithSetNotifyMode(fib.NotifyAll))
	agents.Bind(listener)
	tracker, err := gate.NewTracker(listener, gate.DefaultPolicy())
	if err != nil {
		log.Fatal(err)
	}
	srv, err := api.New(
		api.WithLogger(logger),
		api.WithGate(tracker),
		api.WithListenerStats(listener),
		api.WithAgents(agents),
		api.WithLinkNames(listener.LinkName),
		api.WithReady(tracker.Ready()),
	)
	if err != nil {
		log.Fatal(err)
	}
	go listener.Run(ctx)
	go tracker.Run(ctx)
	if err := srv.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
