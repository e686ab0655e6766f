package bestwatch

import (
	"context"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/fibgate/fibgate/internal/lab"
)

// TestUpdatesNameEveryPrefixOfAnUpdate: a neighbour announces three
// prefixes of two families, then withdraws one; the watch hands on every
// NLRI of each UPDATE, the withdrawn one too, and nothing of the paths
// the leaf itself adds.
func TestUpdatesNameEveryPrefixOfAnUpdate(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	g := func(as uint32, id string, port int, listen ...string) *api.Global {
		return &api.Global{Asn: as, RouterId: id, ListenPort: int32(port), ListenAddresses: listen}
	}
	leaf := lab.StartServer(t, "", g(65001, "10.0.0.1", port, "127.0.0.1"))
	a := lab.StartServer(t, "", g(65002, "10.0.0.2", -1))
	fams := []string{"ipv4", "ipv6"}
	lab.AddPeer(t, leaf, lab.Peer{Address: "127.0.0.2", AS: 65002, Families: fams})
	lab.AddPeer(t, a, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: fams, Active: true, RemotePort: uint32(port), LocalAddress: "127.0.0.2"})
	lab.WaitEstablished(t, leaf, "127.0.0.2", 10*time.Second)

	w, err := StartUpdates(leaf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		seen []string
	)
	done := make(chan error, 1)
	go func() {
		done <- w.Run(ctx, func(ns []bgp.AddrPrefixInterface) {
			mu.Lock()
			defer mu.Unlock()
			for _, n := range ns {
				seen = append(seen, n.String())
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	add := func(s interface {
		AddPath(context.Context, *api.AddPathRequest) (*api.AddPathResponse, error)
	}, prefix, nh string, withdraw bool) {
		t.Helper()
		var nlri bgp.AddrPrefixInterface
		var hop bgp.PathAttributeInterface
		if strings.Contains(prefix, ":") {
			nlri = bgp.NewIPv6AddrPrefix(32, strings.TrimSuffix(prefix, "/32"))
			hop = bgp.NewPathAttributeMpReachNLRI(nh, []bgp.AddrPrefixInterface{nlri})
		} else {
			nlri = bgp.NewIPAddrPrefix(24, strings.TrimSuffix(prefix, "/24"))
			hop = bgp.NewPathAttributeNextHop(nh)
		}
		path, err := apiutil.NewPath(nlri, withdraw, []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), hop}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
			t.Fatal(err)
		}
	}
	add(leaf, "192.0.2.0/24", "0.0.0.0", false) // the leaf's own: no UPDATE
	add(a, "198.51.100.0/24", "127.0.0.2", false)
	add(a, "203.0.113.0/24", "127.0.0.2", false)
	add(a, "2001:db8::/32", "::ffff:127.0.0.2", false)
	add(a, "198.51.100.0/24", "127.0.0.2", true)
	want := []string{"198.51.100.0/24", "198.51.100.0/24", "2001:db8::/32", "203.0.113.0/24"}
	lab.Eventually(t, 10*time.Second, "every prefix of a's UPDATEs", func() error {
		mu.Lock()
		got := slices.Clone(seen)
		mu.Unlock()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return &mismatch{got, want}
		}
		return nil
	})
}

type mismatch struct{ got, want []string }

func (m *mismatch) Error() string {
	return "NLRIs " + strings.Join(m.got, " ") + "; want " + strings.Join(m.want, " ")
}

// TestUpdateEventsOfAnotherShapeAreRefused: an event that is not GoBGP
// v3.37's watchEventUpdate is refused before a field is read, and turns
// the package off as a best-path event of another shape does.
func TestUpdateEventsOfAnotherShapeAreRefused(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	updMu.Lock()
	was := updType
	updType = nil
	updMu.Unlock()
	t.Cleanup(func() {
		evMu.Lock()
		broken = nil
		evMu.Unlock()
		updMu.Lock()
		updType = was
		updMu.Unlock()
	})
	if _, err := checkUpdate(reflect.TypeFor[*bestEvent]()); err == nil || !strings.Contains(err.Error(), "want *server.watchEventUpdate") {
		t.Errorf("checkUpdate of another type: %v", err)
	}
	if _, err := updateLayout(reflect.TypeFor[*bestEvent]()); err == nil {
		t.Fatal("an update event of another type was read")
	}
	if err := Available(); err == nil {
		t.Error("Available after a refused update event: nil, want why")
	}
}
