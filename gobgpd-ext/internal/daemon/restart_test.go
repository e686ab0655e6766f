package daemon

import (
	"strings"
	"testing"
	"time"
)

func TestGracefulRestartSettings(t *testing.T) {
	d := Defaults()
	if d.GracefulRestart.RestartOnStop || d.RestartTimeout() != DefaultRestartTimeout || time.Duration(d.GracefulRestart.Timeout) != DefaultRestartTimeout {
		t.Errorf("defaults: %+v, timeout %v; want a stop for good and %v", d.GracefulRestart, d.RestartTimeout(), DefaultRestartTimeout)
	}
	c, err := Parse([]byte("graceful_restart:\n  restart_on_stop: true\n  timeout: 30s\nbackend:\n  type: sim\n  sim:\n    warm: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.GracefulRestart.RestartOnStop || c.RestartTimeout() != 30*time.Second {
		t.Errorf("parsed %+v, timeout %v", c.GracefulRestart, c.RestartTimeout())
	}
	sc, err := c.simConfig()
	if err != nil || !sc.Warm {
		t.Errorf("backend.sim.warm: true gives sim.Config.Warm %v (%v)", sc.Warm, err)
	}
	if _, err := Parse([]byte("graceful_restart:\n  timeout: -1s\n")); err == nil || !strings.Contains(err.Error(), "graceful_restart.timeout") {
		t.Errorf("a negative timeout: %v; want an error naming graceful_restart.timeout", err)
	}
	if _, err := Parse([]byte("graceful_restart:\n  restart_on_stpo: true\n")); err == nil {
		t.Error("a misspelt key was accepted")
	}
}
