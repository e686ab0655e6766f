package kernel

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// trapDriver is a netdevsim-like driver: whatever it is told to program
// gets trap, reported from its own goroutine as a real driver's worker would.
type trapDriver struct {
	work chan fib.DriverEvent
}

func (d *trapDriver) Event(ev fib.DriverEvent) error {
	d.work <- ev
	return nil
}

func (d *trapDriver) run(l *Listener, stop <-chan struct{}) {
	for {
		select {
		case ev := <-d.work:
			if ev.Kind == fib.DriverReplace {
				l.SetFlags(&ev.Route, fib.Trap)
			}
		case <-stop:
			return
		}
	}
}

func startWithDriver(t *testing.T, ns string) (*Listener, <-chan []Event) {
	t.Helper()
	d := &trapDriver{work: make(chan fib.DriverEvent, 1<<16)}
	l, evs := startListener(t, ns, WithDriver(d))
	stop := make(chan struct{})
	go d.run(l, stop)
	t.Cleanup(func() { close(stop) })
	return l, evs
}

func TestDriverFlagsFollowTheNotifyMode(t *testing.T) {
	for _, mode := range []int{1, 0} {
		t.Run([]string{"mode 0 stores flags silently", "mode 1 announces flags"}[mode], func(t *testing.T) {
			ns := newTestNS(t)
			if err := SetNotifyMode(Options{NetNS: ns}, fib.IPv4, mode); err != nil {
				t.Fatal(err)
			}
			addTestLink(t, ns, "eth1")
			l, evs := startWithDriver(t, ns)
			ipn(t, ns, "route", "add", "192.0.2.0/24", "dev", "eth1")
			ev := waitEvent(t, evs, "add", isEvent(Added, "192.0.2.0/24"))
			if ev.New.Flags != 0 {
				t.Errorf("route announced with flags %s before the driver programmed it", ev.New.Flags)
			}
			p := netip.MustParsePrefix("192.0.2.0/24")
			if mode == 1 {
				ev = waitEvent(t, evs, "trap", isEvent(Changed, "192.0.2.0/24"))
				if ev.Old.Flags != 0 || ev.New.Flags != fib.Trap {
					t.Errorf("change event %s -> %s, want none -> trap", ev.Old.Flags, ev.New.Flags)
				}
			} else {
				// The flags are stored though nobody is told.
				deadline := time.Now().Add(10 * time.Second)
				for {
					var flags fib.HWFlags
					l.View(func(f *fib.FIB) { r, _ := f.First(fib.TableMain, p); flags = r.Flags })
					if flags == fib.Trap {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("model never showed trap")
					}
					time.Sleep(10 * time.Millisecond) // polling with a deadline
				}
			}
			// A resync (a link goes away) keeps what the driver reported.
			addTestLink(t, ns, "eth2")
			ipn(t, ns, "link", "del", "eth2")
			deadline := time.Now().Add(10 * time.Second)
			for l.Stats().Resyncs == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond) // polling with a deadline
			}
			if l.Stats().Resyncs == 0 {
				t.Fatal("link removal caused no resync")
			}
			var flags fib.HWFlags
			l.View(func(f *fib.FIB) { r, _ := f.First(fib.TableMain, p); flags = r.Flags })
			if flags != fib.Trap {
				t.Errorf("after resync the route shows %s, want trap", flags)
			}
		})
	}
}
