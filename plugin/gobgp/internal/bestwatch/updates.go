package bestwatch

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/pinned"
)

//go:linkname watchUpdate github.com/osrg/gobgp/v3/pkg/server.watchUpdate
func watchUpdate(current bool, peerAddress string, peerGroup string) watchOption

// UpdateWatcher follows the UPDATEs GoBGP receives, as WatchEvent's ADJIN
// filter does (before import policy, one event an UPDATE), handing on
// only their NLRIs. Why not WatchEvent: it turns every path of every
// UPDATE into an api.Path with every attribute marshalled, a whole
// table's worth of garbage while a table converges, where the reader
// (release by copy) wants to know which prefixes an UPDATE touched.
type UpdateWatcher struct {
	w *watcher
}

var (
	updMu sync.Mutex
	// updType and updPaths are the event's type and where its PathList
	// is, learned from the first event.
	updType  reflect.Type
	updPaths uintptr
)

// StartUpdates registers a watch of the UPDATEs s receives from then on.
// Run must follow: only it ends the watch.
func StartUpdates(s *server.BgpServer) (*UpdateWatcher, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	return &UpdateWatcher{w: watch(s, watchUpdate(false, "", ""))}, nil
}

// Run calls fn with the NLRIs of every UPDATE's paths, announced and
// withdrawn, until ctx ends (nil) or an event is not what the checks
// expect (an error; fn was not called for it), ending the watch either
// way. fn runs on Run's goroutine; while it runs, GoBGP queues events.
func (w *UpdateWatcher) Run(ctx context.Context, fn func([]bgp.AddrPrefixInterface)) error {
	return drain(ctx, w.w, "update", func(ev any, t reflect.Type) error {
		off, err := updateLayout(t)
		if err != nil {
			return err
		}
		ps := *(*[]*tablePath)(unsafe.Add(reflect.ValueOf(ev).UnsafePointer(), off))
		out := make([]bgp.AddrPrefixInterface, 0, len(ps))
		for _, p := range ps {
			out = append(out, getNlri(p))
		}
		fn(out)
		return nil
	})
}

// updateLayout checks an event's type the first time it is seen and says
// where its PathList is; a type it refuses breaks the package for the
// process, as a best-path event's does.
func updateLayout(t reflect.Type) (uintptr, error) {
	updMu.Lock()
	defer updMu.Unlock()
	if updType == t {
		return updPaths, nil
	}
	if err := Available(); err != nil {
		return 0, err
	}
	off, err := checkUpdate(t)
	if err != nil {
		evMu.Lock()
		if broken == nil {
			broken = err
		}
		evMu.Unlock()
		return 0, err
	}
	updType, updPaths = t, off
	return off, nil
}

func checkUpdate(t reflect.Type) (uintptr, error) {
	if updType != nil {
		return 0, fmt.Errorf("an update event of type %s after %s", t, updType)
	}
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct || t.String() != "*server.watchEventUpdate" {
		return 0, fmt.Errorf("an update event of type %s, want *server.watchEventUpdate", t)
	}
	f, err := pinned.Field(t.Elem(), "PathList", "[]*table.Path")
	if err != nil {
		return 0, err
	}
	if p := f.Type.Elem().Elem(); p != lay.pathType {
		return 0, fmt.Errorf("%s holds %s, want %s", t, p, lay.pathType)
	}
	return f.Offset, nil
}
