//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// refusedSettings is churnSettings with the sim refusing, like netdevsim's
// FIB resource, what does not fit its table.
const refusedSettings = `log_level: info
notify_mode: "1"
backend:
  type: sim
  sim:
    latency: 1ms
    capacity_mode: refuse
api:
  socket: %s
policy:
  scopes:
    - name: v4
      family: ipv4
`

// TestAFullTableRefusesAndTheGateShowsIt is issue 11's refused installs
// through gobgpd-ext, with the sim refusing like netdevsim's full FIB:
//
//	source (gobgpd 65003) ── leaf (gobgpd-ext, sim with room for 5) ── observer (gobgpd 65002)
//
// Of 10 prefixes learned, exactly the 5 that fit reach the observer, and
// exactly their routes are in the leaf's kernel; the other 5 show as
// refused with netdevsim's error. Once the table grows, the FIB installer's
// retries install them and they reach the observer, with nothing announced
// again.
func TestAFullTableRefusesAndTheGateShowsIt(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end with namespaces and three BGP speakers: skipped in -short mode")
	}
	lab.RequireRoot(t)
	bin := binaries(t)
	lab.GobgpBinaries(t)
	ctx := context.Background()

	src, obs := lab.NewNS(t, "src"), lab.NewNS(t, "obs")
	conf := lab.GobgpdConf{AS: churnLeafAS, RouterID: churnLeafSrc, Neighbours: []lab.Neighbour{
		{Address: churnSrcLeaf, AS: churnSourceAS}, {Address: churnObsLeaf, AS: churnObserverAS}}}
	l := &leaf{name: "gobgpd-ext", ns: lab.NewNS(t, "leaf"), as: conf.AS, dir: dir(t), owner: t}
	lab.Link(t, l.ns, "to-src", churnLeafSrc, "fd00:3::1", src, "to-leaf", churnSrcLeaf, "fd00:3::2")
	lab.Link(t, l.ns, "to-obs", churnLeafObs, "fd00:4::1", obs, "to-leaf", churnObsLeaf, "fd00:4::2")
	l.api = filepath.Join(l.dir, "fibgate.sock")
	settings := filepath.Join(l.dir, "fibgate.yaml")
	if err := os.WriteFile(settings, fmt.Appendf(nil, refusedSettings, l.api), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.dir, "gobgpd.toml"), []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	l.start = func(tb testing.TB) *lab.Process {
		return lab.Start(tb, l.ns, l.dir, fmt.Sprintf("gobgpd-ext.%d", l.starts), filepath.Join(bin, "gobgpd-ext"),
			"-f", filepath.Join(l.dir, "gobgpd.toml"), "--api-hosts", "unix://"+filepath.Join(l.dir, "gobgp.sock"),
			"-p", "--pprof-disable", "--fibgate-config", settings)
	}
	l.run(t)

	// Room for 5 more prefixes than the leaf's own routes take now.
	st, err := l.sim().GetSimStats(ctx, &pb.GetSimStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetCapacityMode() != "refuse" {
		t.Fatalf("capacity mode %q, want refuse", st.GetCapacityMode())
	}
	held := st.GetHeld().GetIpv4Prefix()
	if _, err := l.sim().SetSimCapacity(ctx, &pb.SetSimCapacityRequest{Ipv4Prefix: uint32(held) + 5}); err != nil {
		t.Fatal(err)
	}

	source := lab.StartGobgpd(t, src, lab.ActiveSpeakerConf(churnSourceAS, churnSrcLeaf, lab.Neighbour{Address: churnLeafSrc, AS: churnLeafAS}))
	srcAPI := api.NewGobgpApiClient(source.Dial(t))
	observer := lab.StartGobgpd(t, obs, lab.ActiveSpeakerConf(churnObserverAS, churnObsLeaf, lab.Neighbour{Address: churnLeafObs, AS: churnLeafAS}))
	obsConn := observer.Dial(t)
	waitSession(t, srcAPI, churnLeafSrc)
	waitSession(t, api.NewGobgpApiClient(obsConn), churnLeafObs)
	watch := lab.WatchBest(t, obsConn)

	var ps []netip.Prefix
	for i := range 10 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, byte(i), 0}), 24))
	}
	if err := lab.AnnounceIPv4(ctx, srcAPI, ps, netip.MustParseAddr(churnSrcLeaf)); err != nil {
		t.Fatal(err)
	}
	states := func() (map[pb.State][]netip.Prefix, map[netip.Prefix]*pb.Route) {
		by, routes := map[pb.State][]netip.Prefix{}, map[netip.Prefix]*pb.Route{}
		for _, p := range ps {
			if r, err := l.route(p); err == nil {
				by[r.GetState()] = append(by[r.GetState()], p)
				routes[p] = r
			}
		}
		return by, routes
	}
	lab.Eventually(t, 30*time.Second, "5 released, 5 refused", func() error {
		by, _ := states()
		if len(by[pb.State_STATE_RELEASED]) != 5 || len(by[pb.State_STATE_REFUSED]) != 5 {
			return fmt.Errorf("states %v", by)
		}
		if n, _ := watch.Count(); n != 5 {
			return fmt.Errorf("observer has %d", n)
		}
		return nil
	})
	by, routes := states()
	kernel := strings.Join(l.kernelBGPRoutes(t), "\n")
	for _, p := range by[pb.State_STATE_RELEASED] {
		if !watch.Has(p) || !strings.Contains(kernel, p.String()) {
			t.Errorf("released %v: at the observer %v, in the kernel %v", p, watch.Has(p), strings.Contains(kernel, p.String()))
		}
	}
	for _, p := range by[pb.State_STATE_REFUSED] {
		if watch.Has(p) || strings.Contains(kernel, p.String()) {
			t.Errorf("refused %v is at the observer (%v) or in the kernel (%v)", p, watch.Has(p), strings.Contains(kernel, p.String()))
		}
		if r := routes[p]; !strings.Contains(r.GetReason(), "operation not permitted: sim: Exceeded number of supported fib entries") ||
			r.GetRetries() < 1 || r.GetNextRetryTime() == nil {
			t.Errorf("refused %v: reason %q, retries %d, next %v", p, r.GetReason(), r.GetRetries(), r.GetNextRetryTime())
		}
	}

	// Room for all: `fibgate hw retry --all` writes the refused ones again
	// at once (the installer's own retries back off to minutes), nothing
	// announced again.
	if _, err := l.sim().SetSimCapacity(ctx, &pb.SetSimCapacityRequest{Ipv4Prefix: uint32(held) + 10}); err != nil {
		t.Fatal(err)
	}
	rr, err := pb.NewHardwareServiceClient(l.conn).RetryRoutes(ctx, &pb.RetryRoutesRequest{All: true})
	if err != nil || rr.GetRefusedWritten() != 5 || len(rr.GetErrors()) != 0 {
		t.Fatalf("RetryRoutes: %v, %v; want the 5 refused written again", rr, err)
	}
	lab.Eventually(t, 30*time.Second, "all 10 released and at the observer", func() error {
		by, _ := states()
		if n, _ := watch.Count(); len(by[pb.State_STATE_RELEASED]) != 10 || n != 10 {
			return fmt.Errorf("states %v, observer has %d", by, n)
		}
		return nil
	})
	s, err := pb.NewStatsServiceClient(l.conn).GetStats(ctx, &pb.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s.GetRefusedWrites() < 5 || s.GetRefusals() != 5 {
		t.Errorf("stats: %d refused writes, %d refusals; want at least 5 and 5", s.GetRefusedWrites(), s.GetRefusals())
	}
}
