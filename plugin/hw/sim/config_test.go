package sim

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/fibgate/fibgate/plugin/fib"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"an unknown mode", func(c *Config) { c.Mode = "asic" }, "Mode"},
		{"a negative capacity", func(c *Config) { c.Capacity.IPv6Host = -1 }, "Capacity.IPv6Host"},
		{"a negative latency", func(c *Config) { c.Latency = -1 }, "Latency"},
		{"a negative jitter", func(c *Config) { c.Jitter = -1 }, "Jitter"},
		{"a negative rate", func(c *Config) { c.Rate = -5 }, "Rate"},
		{"a zero batch", func(c *Config) { c.Batch = 0 }, "Batch"},
		{"a probability above one", func(c *Config) { c.FailProbability = 2 }, "FailProbability"},
		{"no tables", func(c *Config) { c.Tables = nil }, "Tables"},
		{"the mirror table programmed", func(c *Config) { c.Tables = append(c.Tables, c.MirrorTable) }, "Tables"},
		{"a table twice", func(c *Config) { c.Tables = []uint32{254, 254} }, "Tables"},
		{"the main table as mirror", func(c *Config) { c.MirrorTable = fib.TableMain }, "MirrorTable"},
		{"a rule after main", func(c *Config) { c.RulePriority = 32766 }, "RulePriority"},
		{"a rule priority of zero", func(c *Config) { c.RulePriority = 0 }, "RulePriority"},
		{"a port name with a slash", func(c *Config) { c.Ports = []string{"eth0/1"} }, "Ports"},
		{"a port twice", func(c *Config) { c.Ports = []string{"eth0", "eth0"} }, "Ports"},
	} {
		t.Run(tc.name+" is rejected by field", func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("Validate() = %v, want a ConfigError for %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
			if _, err := New(c); err == nil {
				t.Error("New accepted the invalid config")
			}
		})
	}
}

func TestSettersValidate(t *testing.T) {
	s, err := New(DefaultConfig(), WithoutForwarding())
	if err != nil {
		t.Fatal(err)
	}
	if s.SetCapacity(Capacity{IPv4Prefix: -1}) == nil || s.SetLatency(-1, 0) == nil ||
		s.SetRate(10, 0) == nil || s.SetFailProbability(-0.1) == nil {
		t.Error("a setter accepted an invalid value")
	}
	if err := s.SetRate(100, 8); err != nil {
		t.Fatal(err)
	}
	if c := s.Config(); c.Rate != 100 || c.Batch != 8 {
		t.Errorf("Config() after SetRate: rate %d batch %d", c.Rate, c.Batch)
	}
}

func TestClassifier(t *testing.T) {
	res := &fakeNeighbours{ok: map[netip.Addr]bool{netip.MustParseAddr("10.0.0.2"): true}}
	typ := func(t fib.RouteType) func(*fib.Route) {
		return func(r *fib.Route) { r.Type, r.Nexthops = t, nil }
	}
	for _, tc := range []struct {
		name  string
		mode  Mode
		route fib.Route
		want  fib.HWFlags
	}{
		{"trap mode traps a blackhole (54)", ModeTrap, route("192.0.2.0/24", typ(fib.TypeBlackhole)), fib.Trap},
		{"trap mode traps a resolved gateway route (54)", ModeTrap, route("192.0.2.0/24", via("10.0.0.2")), fib.Trap},
		{"spectrum traps a local route (61)", ModeSpectrum, route("192.0.2.1/32", typ(fib.TypeLocal)), fib.Trap},
		{"spectrum traps a broadcast route (61)", ModeSpectrum, route("192.0.2.255/32", typ(fib.TypeBroadcast)), fib.Trap},
		{"spectrum offloads a blackhole (62)", ModeSpectrum, route("192.0.2.0/24", typ(fib.TypeBlackhole)), fib.Offload},
		{"spectrum traps unreachable (63)", ModeSpectrum, route("192.0.2.0/24", typ(fib.TypeUnreachable)), fib.Trap},
		{"spectrum traps prohibit (63)", ModeSpectrum, route("192.0.2.0/24", typ(fib.TypeProhibit)), fib.Trap},
		{"spectrum traps tos 0x10 (64)", ModeSpectrum, route("192.0.2.0/24", func(r *fib.Route) { r.TOS = 0x10 }), fib.Trap},
		{"spectrum traps an unresolved gateway (65)", ModeSpectrum, route("192.0.2.0/24", via("10.0.0.9")), fib.Trap},
		{"spectrum offloads a resolved gateway (65)", ModeSpectrum, route("192.0.2.0/24", via("10.0.0.2")), fib.Offload},
		{"spectrum offloads a device route", ModeSpectrum, route("192.0.2.0/24"), fib.Offload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := classify(tc.mode, &tc.route, res); got != tc.want {
				t.Errorf("classify = %s, want %s", got, tc.want)
			}
		})
	}
	// An ECMP route forwards once one path is resolved; each path says so.
	r := route("192.0.2.0/24", via("10.0.0.9"))
	r.Nexthops = append(r.Nexthops, fib.Nexthop{Gateway: netip.MustParseAddr("10.0.0.2"), LinkIndex: 2})
	got, nh := classify(ModeSpectrum, &r, res)
	if got != fib.Offload || len(nh) != 2 || nh[0] != 0 || nh[1] != fib.Offload {
		t.Errorf("ECMP with one resolved path: %s %v, want offload [none offload]", got, nh)
	}
}
