package sim

import (
	"errors"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/kernel"
)

func add(r fib.Route) kernel.RouteOp    { return kernel.RouteOp{Route: r} }
func remove(r fib.Route) kernel.RouteOp { return kernel.RouteOp{Route: r, Delete: true} }

// accepted runs one write through the sim as the FIB installer does: Veto,
// then the "kernel" (which takes whatever it is sent), then Written and the
// listener's driver event. It returns Veto's answer.
func accepted(s *Sim, op kernel.RouteOp) error {
	err := s.Veto([]kernel.RouteOp{op})[0]
	if err != nil {
		return err
	}
	s.Written([]kernel.RouteOp{op}, []error{nil})
	if op.Delete {
		_ = s.Event(del(op.Route))
	} else {
		_ = s.Event(replace(op.Route))
	}
	return nil
}

func isFull(err error) bool {
	var ae *kernel.AckError
	return errors.As(err, &ae) && errors.Is(err, syscall.EPERM) && ae.Msg == "sim: Exceeded number of supported fib entries"
}

// TestRefuseModeVetoesWhatDoesNotFit is capacity_mode refuse: netdevsim's
// FIB resource (kernel-semantics behaviours 51, 52) on the writer's path.
func TestRefuseModeVetoesWhatDoesNotFit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Capacity.IPv4Prefix = 2
		cfg.CapacityMode = CapacityRefuse
		s, _ := runSim(t, cfg)
		p1, p2, p3 := route("10.1.0.0/16"), route("10.2.0.0/16"), route("10.3.0.0/16")

		// One batch of three: the third is refused before the kernel has it.
		errs := s.Veto([]kernel.RouteOp{add(p1), add(p2), add(p3)})
		if errs[0] != nil || errs[1] != nil || !isFull(errs[2]) {
			t.Fatalf("Veto = %v, want nil, nil and netdevsim's EPERM", errs)
		}
		s.Written([]kernel.RouteOp{add(p1), add(p2)}, []error{nil, nil})
		_ = s.Event(replace(p1))
		_ = s.Event(replace(p2))
		time.Sleep(time.Second)
		synctest.Wait()
		for _, p := range []string{"10.1.0.0/16", "10.2.0.0/16"} {
			if f, _ := hwFlags(s, p); f != fib.Trap {
				t.Errorf("%s shows %s, want trap: what was let through fits", p, f)
			}
		}
		if _, ok := hwFlags(s, "10.3.0.0/16"); ok {
			t.Error("the refused route reached the hardware")
		}
		// Hosts have their own room.
		if err := accepted(s, add(route("10.9.9.9/32"))); err != nil {
			t.Errorf("host route: %v", err)
		}
		// Full: replacing a route the table holds is refused too (52).
		if err := s.Veto([]kernel.RouteOp{add(route("10.1.0.0/16", via("10.0.0.9")))})[0]; !isFull(err) {
			t.Errorf("replace while full: %v, want EPERM", err)
		}
		// A route behind the forwarding one (higher metric) is not asked about.
		if err := s.Veto([]kernel.RouteOp{add(route("10.1.0.0/16", metric(500)))})[0]; err != nil {
			t.Errorf("a route that will not forward: %v, want nil", err)
		}
		if st := s.Stats(); st.Refused != 2 || st.Held.IPv4Prefix != 2 || st.Held.IPv4Host != 1 {
			t.Errorf("stats: refused %d, held %+v; want 2 refused, 2 prefixes and 1 host held", st.Refused, st.Held)
		}

		// A delete frees its room as soon as the kernel acknowledges it.
		s.Written([]kernel.RouteOp{remove(p1)}, []error{nil})
		if err := s.Veto([]kernel.RouteOp{add(p3)})[0]; err != nil {
			t.Fatalf("after a delete: %v, want the room", err)
		}
		// The kernel refuses that write for its own reasons: the room is
		// given back.
		s.Written([]kernel.RouteOp{add(p3)}, []error{syscall.ENETUNREACH})
		_ = s.Event(del(p1)) // the listener's late news of the delete
		if err := accepted(s, add(p3)); err != nil {
			t.Errorf("room of a write the kernel refused: %v", err)
		}
		if st := s.Stats(); st.Held.IPv4Prefix != 2 {
			t.Errorf("held %+v, want 2 prefixes (p2, p3)", st.Held)
		}
		if err := s.Veto([]kernel.RouteOp{add(route("10.4.0.0/16"))})[0]; !isFull(err) {
			t.Errorf("third prefix again: %v, want EPERM", err)
		}
	})
}

// TestRefuseModeFlagsRoutesWrittenUnasked: a route written past the FIB
// installer (ip route, another daemon) reaches the kernel before the sim
// can refuse it; beyond the capacity it is flagged offload_failed, and
// programmed once a delete makes room.
func TestRefuseModeFlagsRoutesWrittenUnasked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Capacity.IPv4Prefix = 1
		cfg.CapacityMode = CapacityRefuse
		s, rec := runSim(t, cfg)
		p1, p2 := route("10.1.0.0/16"), route("10.2.0.0/16")
		_ = s.Event(replace(p1))
		_ = s.Event(replace(p2))
		time.Sleep(time.Second)
		synctest.Wait()
		if f, _ := hwFlags(s, "10.2.0.0/16"); f != fib.OffloadFailed {
			t.Fatalf("a route beyond the capacity shows %s, want offload_failed", f)
		}
		_ = s.Event(del(p1))
		time.Sleep(time.Second)
		synctest.Wait()
		got := rec.of("10.2.0.0/16")
		if len(got) != 2 || got[1].flags != fib.Trap {
			t.Errorf("reports for the second prefix %+v, want offload_failed then trap", got)
		}
	})
}

func TestFlagModeRefusesNothing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Capacity.IPv4Prefix = 1
	s, err := New(cfg, WithoutForwarding())
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range s.Veto([]kernel.RouteOp{add(route("10.1.0.0/16")), add(route("10.2.0.0/16"))}) {
		if err != nil {
			t.Errorf("flag mode refused a write: %v", err)
		}
	}
	cfg.CapacityMode = "drop"
	if _, err := New(cfg); err == nil {
		t.Error("capacity mode \"drop\" accepted")
	}
}
