//go:build linux

package sim

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nudValid is the kernel's NUD_VALID: the states in which a neighbour has a
// usable link-layer address (PERMANENT, NOARP, REACHABLE, PROBE, STALE,
// DELAY). mlxsw programs an adjacency for exactly these.
const nudValid = unix.NUD_PERMANENT | unix.NUD_NOARP | unix.NUD_REACHABLE | unix.NUD_PROBE |
	unix.NUD_STALE | unix.NUD_DELAY

type neighKey struct {
	link int
	addr netip.Addr
}

// neighbours follows the namespace's neighbour table (RTM_NEWNEIGH and
// RTM_DELNEIGH, starting with a dump) so spectrum mode can tell resolved
// gateways from unresolved ones, and tells the engine when one flips.
type neighbours struct {
	nsh     netns.NsHandle
	own     bool // nsh is the process's own namespace
	log     *slog.Logger
	changed func(netip.Addr)

	mu    sync.Mutex
	valid map[neighKey]struct{}
}

func newNeighbours(nsh netns.NsHandle, log *slog.Logger, changed func(netip.Addr)) *neighbours {
	return &neighbours{nsh: nsh, log: log, changed: changed, valid: map[neighKey]struct{}{}}
}

// resolved reports whether gw has a valid neighbour entry on link (on any
// link when the route names none).
func (n *neighbours) resolved(link int, gw netip.Addr) bool {
	gw = gw.Unmap()
	n.mu.Lock()
	defer n.mu.Unlock()
	if link != 0 {
		_, ok := n.valid[neighKey{link, gw}]
		return ok
	}
	for k := range n.valid {
		if k.addr == gw {
			return true
		}
	}
	return false
}

// run follows the neighbour table until ctx ends, subscribing again (which
// dumps again) when the subscription fails, as it does on an overrun.
func (n *neighbours) run(ctx context.Context) {
	const retry = time.Second
	for {
		err := n.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("neighbour subscription ended, subscribing again", "err", err, "retry", retry)
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// follow runs one subscription; it returns once the library's goroutines
// have ended, so none outlives Run.
func (n *neighbours) follow(ctx context.Context) error {
	updates := make(chan netlink.NeighUpdate, 256)
	done := make(chan struct{})
	errc := make(chan error, 1)
	var nsp *netns.NsHandle // the process's own namespace: no setns (CAP_SYS_ADMIN)
	if !n.own {
		nsh := n.nsh
		nsp = &nsh
	}
	err := netlink.NeighSubscribeWithOptions(updates, done, netlink.NeighSubscribeOptions{
		Namespace:    nsp,
		ListExisting: true,
		ErrorCallback: func(err error) {
			if errors.Is(err, netlink.ErrDumpInterrupted) {
				return // the dump raced a change; the change's notification follows
			}
			select {
			case errc <- err:
			default:
			}
		},
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		close(done)
		return err
	}
	defer func() {
		close(done)
		for range updates { // the receiver closes it when it ends
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				select {
				case err := <-errc:
					return err
				default:
					return errors.New("neighbour subscription closed")
				}
			}
			n.update(u)
		}
	}
}

func (n *neighbours) update(u netlink.NeighUpdate) {
	if u.Family != unix.AF_INET && u.Family != unix.AF_INET6 {
		return // bridge fdb entries
	}
	addr, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return
	}
	k := neighKey{u.LinkIndex, addr.Unmap()}
	valid := u.Type == unix.RTM_NEWNEIGH && u.State&nudValid != 0
	n.mu.Lock()
	_, was := n.valid[k]
	if valid {
		n.valid[k] = struct{}{}
	} else {
		delete(n.valid, k)
	}
	n.mu.Unlock()
	if was != valid {
		n.log.Debug("neighbour", "addr", k.addr, "link", k.link, "resolved", valid)
		n.changed(k.addr)
	}
}
