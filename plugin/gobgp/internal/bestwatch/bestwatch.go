// Package bestwatch follows GoBGP's best paths inside a *server.BgpServer
// built from the GoBGP this module pins (v3.37.0), reading each path from
// GoBGP's own structures instead of its API form.
//
// Why: BgpServer.WatchEvent turns every path of every best-path event into
// an api.Path, marshalling its NLRI and each attribute into a protobuf
// Any, only for the gate to read four of them back (next hop, communities,
// AS_PATH, a fingerprint). In gobgpd-ext that conversion was 7% of the
// CPU and 16% of all allocation while a 120k table converged (the garbage
// it leaves is what the collector then chases). Watch registers the same
// watcher WatchEvent does and hands on GoBGP's attributes as they are.
//
// As in package reexport, the calls go through go:linkname to GoBGP's
// unexported functions, and Available checks once that the binary's GoBGP
// is the pinned one (package pinned) and that the structures Watch reads
// have the fields it expects; the layout of an event is checked again on
// each new event type. Anything else makes Available (or Watch) return
// why, and the caller watches through WatchEvent as a stock gobgpd allows.
package bestwatch

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"sync"
	"unsafe"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/pinned"
)

// Opaque stand-ins for GoBGP's unexported and internal types: only
// pointers to them cross the calls below.
type (
	watcher      struct{}
	watchOptions struct{}
	tablePath    struct{}
	peerInfo     struct{}
)

// watchOption is server.watchOption, a func(*watchOptions): a func value
// is one pointer whatever its signature.
type watchOption func(*watchOptions)

//go:linkname watch github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).watch
func watch(s *server.BgpServer, opts ...watchOption) *watcher

//go:linkname watchBestPath github.com/osrg/gobgp/v3/pkg/server.watchBestPath
func watchBestPath(current bool) watchOption

// events is (*watcher).Event: its channel's element type is
// server.watchEvent, an empty interface, which is laid out as any.
//
//go:linkname events github.com/osrg/gobgp/v3/pkg/server.(*watcher).Event
func events(w *watcher) <-chan any

//go:linkname stop github.com/osrg/gobgp/v3/pkg/server.(*watcher).Stop
func stop(w *watcher)

//go:linkname getNlri github.com/osrg/gobgp/v3/internal/pkg/table.(*Path).GetNlri
func getNlri(p *tablePath) bgp.AddrPrefixInterface

//go:linkname getPathAttrs github.com/osrg/gobgp/v3/internal/pkg/table.(*Path).GetPathAttrs
func getPathAttrs(p *tablePath) []bgp.PathAttributeInterface

//go:linkname isFromExternal github.com/osrg/gobgp/v3/internal/pkg/table.(*Path).IsFromExternal
func isFromExternal(p *tablePath) bool

//go:linkname getSource github.com/osrg/gobgp/v3/internal/pkg/table.(*Path).GetSource
func getSource(p *tablePath) *peerInfo

// bestEvent mirrors server.watchEventBestPath; checkEvent checks that
// the real one has these fields at these offsets, of the types in their
// tags as reflect writes GoBGP's.
type bestEvent struct {
	PathList      []*tablePath    `gobgp:"[]*table.Path"`
	MultiPathList [][]*tablePath  `gobgp:"[][]*table.Path"`
	Vrf           map[uint32]bool `gobgp:"map[uint32]bool"`
}

// layout is where the fields Watch reads are.
type layout struct {
	withdraw  uintptr // table.Path.IsWithdraw, a bool
	sourceAS  uintptr // table.PeerInfo.AS, a uint32
	sourceIP  uintptr // table.PeerInfo.Address, a net.IP
	pathType  reflect.Type
	bestEvent reflect.Type // *server.watchEventBestPath, once one was seen
}

var (
	once   sync.Once
	lay    layout
	reason error
	// evMu guards lay.bestEvent, learned from the first event, and broken.
	evMu sync.Mutex
	// broken is why an event could not be read: from then on Available
	// says so, and callers watch through the API.
	broken error
)

// Available says whether Start may be used in this binary: nil, or why
// not. The answer is computed once, and changes only if an event turned
// out not to be what the checks expected.
func Available() error {
	once.Do(func() { lay, reason = check() })
	if reason != nil {
		return reason
	}
	evMu.Lock()
	defer evMu.Unlock()
	return broken
}

func check() (layout, error) {
	if err := pinned.Check(); err != nil {
		return layout{}, err
	}
	// table.Path and table.PeerInfo are internal to GoBGP; their types are
	// reached from BgpServer's: the RIB's tables, destinations, paths.
	var l layout
	steps := []struct{ name, want string }{
		{"globalRib", "*table.TableManager"},
		{"Tables", "map[bgp.RouteFamily]*table.Table"},
		{"destinations", "map[string]*table.Destination"},
		{"knownPathList", "[]*table.Path"},
	}
	t := reflect.TypeFor[server.BgpServer]()
	for _, s := range steps {
		f, err := pinned.Field(t, s.name, s.want)
		if err != nil {
			return layout{}, err
		}
		t = f.Type
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Map || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
	}
	l.pathType = t
	f, err := pinned.Field(t, "IsWithdraw", "bool")
	if err != nil {
		return layout{}, err
	}
	l.withdraw = f.Offset
	info, err := pinned.Field(t, "info", "*table.originInfo")
	if err != nil {
		return layout{}, err
	}
	src, err := pinned.Field(info.Type.Elem(), "source", "*table.PeerInfo")
	if err != nil {
		return layout{}, err
	}
	if f, err = pinned.Field(src.Type.Elem(), "AS", "uint32"); err != nil {
		return layout{}, err
	}
	l.sourceAS = f.Offset
	if f, err = pinned.Field(src.Type.Elem(), "Address", "net.IP"); err != nil {
		return layout{}, err
	}
	l.sourceIP = f.Offset
	return l, nil
}

// eventLayout checks an event's type against bestEvent the first time it
// is seen; a type it refuses breaks the package for the process.
func eventLayout(t reflect.Type) error {
	evMu.Lock()
	defer evMu.Unlock()
	if lay.bestEvent == t {
		return nil
	}
	if broken == nil {
		broken = checkEvent(t)
	}
	return broken
}

func checkEvent(t reflect.Type) error {
	if lay.bestEvent != nil {
		return fmt.Errorf("a best-path event of type %s after %s", t, lay.bestEvent)
	}
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct || t.String() != "*server.watchEventBestPath" {
		return fmt.Errorf("a best-path event of type %s, want *server.watchEventBestPath", t)
	}
	et, mt := t.Elem(), reflect.TypeFor[bestEvent]()
	if et.Size() != mt.Size() || et.NumField() != mt.NumField() {
		return fmt.Errorf("%s is %d bytes in %d fields, want %d in %d", t, et.Size(), et.NumField(), mt.Size(), mt.NumField())
	}
	for i := range mt.NumField() {
		want := mt.Field(i)
		f, err := pinned.Field(et, want.Name, want.Tag.Get("gobgp"))
		if err != nil {
			return err
		}
		if f.Offset != want.Offset {
			return fmt.Errorf("%s.%s is at %d, want %d", t, want.Name, f.Offset, want.Offset)
		}
	}
	if p := et.Field(0).Type.Elem().Elem(); p != lay.pathType {
		return fmt.Errorf("%s holds %s, want %s", t, p, lay.pathType)
	}
	lay.bestEvent = t
	return nil
}

// Path is one path of a best-path event, as GoBGP holds it. Attrs are
// GoBGP's own attributes (GetPathAttrs: a fresh list of shared values):
// read them, never change them.
type Path struct {
	Nlri     bgp.AddrPrefixInterface
	Withdraw bool
	// External is IsFromExternal: a path added over the API as if learned.
	External bool
	// SourceAS and Neighbor are of the neighbour that sent it; Neighbor
	// is nil for a local path.
	SourceAS uint32
	Neighbor net.IP
	Attrs    []bgp.PathAttributeInterface
}

// Watcher is a best-path watch registered in GoBGP: from Start on, GoBGP
// queues its events for Run.
type Watcher struct {
	w *watcher
}

// Start registers a watch of s's best paths, the whole table first, as
// WatchEvent with a BEST filter and Init does. Run must follow: only it
// ends the watch.
func Start(s *server.BgpServer) (*Watcher, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	return &Watcher{w: watch(s, watchBestPath(true))}, nil
}

// Run calls fn with the paths of every event, the whole table first (one
// call), as WatchEvent would hand them over: the multipath sets when
// GoBGP made any, else the best paths. It returns when ctx ends (nil) or
// when an event is not as Available checked it (an error, and fn was not
// called for that event), ending the watch either way. fn runs on Run's
// goroutine; while it runs, GoBGP queues events.
func (w *Watcher) Run(ctx context.Context, fn func([]Path)) error {
	return drain(ctx, w.w, "best-path", func(ev any, t reflect.Type) error {
		if err := eventLayout(t); err != nil {
			return err
		}
		fn(read((*bestEvent)(reflect.ValueOf(ev).UnsafePointer())))
		return nil
	})
}

// drain hands every event of w, with its type, to handle until ctx ends
// (nil), GoBGP closes the watch or handle refuses an event (an error),
// and stops the watch either way.
func drain(ctx context.Context, w *watcher, what string, handle func(ev any, t reflect.Type) error) error {
	defer stop(w)
	ch := events(w)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return fmt.Errorf("GoBGP closed the %s watch", what)
			}
			if t := reflect.TypeOf(ev); t != nil {
				if err := handle(ev, t); err != nil {
					return err
				}
			}
		}
	}
}

// read is what WatchEvent's loop does with an event before converting
// each path: the multipath sets, one after the other, or the best paths.
func read(e *bestEvent) []Path {
	sets := e.MultiPathList
	if len(sets) == 0 {
		sets = [][]*tablePath{e.PathList}
	}
	n := 0
	for _, set := range sets {
		n += len(set)
	}
	out := make([]Path, 0, n)
	for _, set := range sets {
		for _, p := range set {
			out = append(out, pathOf(p))
		}
	}
	return out
}

func pathOf(p *tablePath) Path {
	out := Path{
		Nlri:     getNlri(p),
		Withdraw: *(*bool)(unsafe.Add(unsafe.Pointer(p), lay.withdraw)),
		External: isFromExternal(p),
		Attrs:    getPathAttrs(p),
	}
	if src := unsafe.Pointer(getSource(p)); src != nil {
		out.SourceAS = *(*uint32)(unsafe.Add(src, lay.sourceAS))
		out.Neighbor = *(*net.IP)(unsafe.Add(src, lay.sourceIP))
	}
	return out
}
