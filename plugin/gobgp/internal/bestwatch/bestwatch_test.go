package bestwatch

import (
	"reflect"
	"strings"
	"testing"
)

// TestAvailableInThisModule: in this module's binaries and tests the
// layout checks pass, so gobgpd-ext reads GoBGP's own paths.
func TestAvailableInThisModule(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	if lay.withdraw == 0 && lay.sourceAS == lay.sourceIP {
		t.Errorf("layout %+v: offsets not found", lay)
	}
}

// TestEventsOfAnotherShapeAreRefused: an event whose type is not GoBGP
// v3.37's watchEventBestPath is refused before any field is read (plugin/gobgp's watch then goes through WatchEvent).
func TestEventsOfAnotherShapeAreRefused(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		t    reflect.Type
		want string
	}{
		{"not a pointer", reflect.TypeFor[bestEvent](), "want *server.watchEventBestPath"},
		{"another type", reflect.TypeFor[*bestEvent](), "want *server.watchEventBestPath"},
	} {
		err := checkEvent(c.t)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

// TestAnEventItCannotReadTurnsItOff: once Run met an event it refuses,
// Available says why, so the next watch goes through WatchEvent instead
// of failing the same way again.
func TestAnEventItCannotReadTurnsItOff(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		evMu.Lock()
		broken = nil
		evMu.Unlock()
	})
	if err := eventLayout(reflect.TypeFor[*bestEvent]()); err == nil {
		t.Fatal("an event of another type was read")
	}
	if err := Available(); err == nil || !strings.Contains(err.Error(), "watchEventBestPath") {
		t.Errorf("Available after a refused event: %v, want why", err)
	}
	if _, err := Start(nil); err == nil {
		t.Error("Start after a refused event: no error")
	}
}
