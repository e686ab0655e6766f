//go:build linux

package netdevsim

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/fibgate/fibgate/internal/lab"
)

// speaker is a stock gobgpd, as peer, observer or the sidecar's gobgpd.
type speaker struct {
	*lab.Process
	name   string
	target string
	conn   *grpc.ClientConn
	api    api.GobgpApiClient
}

// startSpeaker runs gobgpd with conf in namespace ns; waitAPI waits
// until it answers. (Processes start slowly under TCG: a rig starts its
// daemons together and then waits for each.)
func startSpeaker(t *testing.T, ns, name, conf string) *speaker {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gobgpd.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &speaker{name: name, target: "unix://" + filepath.Join(dir, "api.sock")}
	s.Process = lab.Start(t, ns, dir, name, bin("gobgpd"), "-f", path, "--api-hosts", s.target, "-l", "info", "--pprof-disable")
	conn, err := grpc.NewClient(s.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.conn, s.api = conn, api.NewGobgpApiClient(conn)
	return s
}

// waitAPI waits until the speaker's API answers.
func (s *speaker) waitAPI(t *testing.T) {
	t.Helper()
	lab.Eventually(t, 20*time.Second, s.name+"'s gobgpd API", func() error {
		if s.Exited() {
			b, _ := os.ReadFile(s.Log)
			t.Fatalf("%s's gobgpd exited:\n%s", s.name, b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := s.api.GetBgp(ctx, &api.GetBgpRequest{})
		return err
	})
}

// announce adds a path for each prefix to the speaker's global table,
// next hop self, as `gobgp global rib add` does, in one call each through
// the API (a gobgp process each would cost the VM's one CPU).
func (s *speaker) announce(tb testing.TB, ps ...netip.Prefix) {
	tb.Helper()
	for _, p := range ps {
		if _, err := s.api.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: localPath(tb, p)}); err != nil {
			tb.Fatalf("%s: announce %v: %v", s.name, p, err)
		}
	}
}

// withdraw deletes what announce added.
func (s *speaker) withdraw(tb testing.TB, ps ...netip.Prefix) {
	tb.Helper()
	for _, p := range ps {
		if err := deletePath(s.api, localPath(tb, p)); err != nil {
			tb.Fatalf("%s: withdraw %v: %v", s.name, p, err)
		}
	}
}

func deletePath(c api.GobgpApiClient, p *api.Path) error {
	_, err := c.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: p.Family, Path: p})
	return err
}

// localPath is a path for p with an unspecified next hop, which GoBGP
// replaces with its own address towards each neighbour.
func localPath(tb testing.TB, p netip.Prefix) *api.Path {
	tb.Helper()
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		tb.Fatal(err)
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0})
	if err != nil {
		tb.Fatal(err)
	}
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	var hop proto.Message = &api.NextHopAttribute{NextHop: "0.0.0.0"}
	if p.Addr().Is6() {
		fam = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
		hop = &api.MpReachNLRIAttribute{Family: fam, NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}}
	}
	h, err := anypb.New(hop)
	if err != nil {
		tb.Fatal(err)
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: []*anypb.Any{origin, h}}
}

// waitEstablished waits until the session with neighbour is up.
func (s *speaker) waitEstablished(tb testing.TB, neighbour string) {
	tb.Helper()
	lab.Eventually(tb, 30*time.Second, "session with "+neighbour, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := s.api.ListPeer(ctx, &api.ListPeerRequest{Address: neighbour})
		if err != nil {
			return err
		}
		var state api.PeerState_SessionState
		for {
			r, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			state = r.GetPeer().GetState().GetSessionState()
		}
		if state != api.PeerState_ESTABLISHED {
			return fmt.Errorf("state %v", state)
		}
		return nil
	})
}

// localPaths lists the paths of the speaker's global table that no
// neighbour sent: HOLD paths and originated prefixes.
func (s *speaker) localPaths(tb testing.TB) []string {
	tb.Helper()
	var out []string
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		st, err := s.api.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL,
			Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}})
		if err != nil {
			tb.Fatalf("list paths: %v", err)
		}
		for {
			r, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				tb.Fatalf("list paths: %v", err)
			}
			for _, p := range r.GetDestination().GetPaths() {
				if a, err := netip.ParseAddr(p.GetNeighborIp()); err == nil && !a.IsUnspecified() {
					continue
				}
				out = append(out, fmt.Sprintf("%s (neighbour %q)", r.GetDestination().GetPrefix(), p.GetNeighborIp()))
			}
		}
	}
	return out
}
