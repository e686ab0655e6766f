package logstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// lines decodes every line of b as a JSON object; a line that is not one
// fails the test.
func lines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestGoBGPAndFibgateWriteOneFormatToOneStream(t *testing.T) {
	var b bytes.Buffer
	h := Handler(&b, false)
	bgp := NewGoBGP(h, gobgplog.InfoLevel, false)
	fibgate := slog.New(AtLevel(h, slog.LevelInfo))

	bgp.Info("Peer Up", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.1.2", "State": "BGP_FSM_OPENCONFIRM"})
	fibgate.Info("prefix confirmed", "prefix", "192.0.2.0/24", "table", 254)
	bgp.Warn("the received Update message was treated as withdraw", gobgplog.Fields{"Topic": "Peer", "Error": errors.New("invalid nexthop address")})

	got := lines(t, &b)
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(got), b.String())
	}
	for i, l := range got {
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line %d has no %q: %v", i, k, l)
			}
		}
	}
	if l := got[0]; l["level"] != "INFO" || l["msg"] != "Peer Up" || l["Topic"] != "Peer" || l["Key"] != "10.0.1.2" || l["State"] != "BGP_FSM_OPENCONFIRM" {
		t.Errorf("GoBGP's line lost its fields: %v", l)
	}
	if l := got[1]; l["prefix"] != "192.0.2.0/24" || l["table"] != float64(254) {
		t.Errorf("fibgate's line: %v", l)
	}
	if l := got[2]; l["level"] != "WARN" || l["Error"] != "invalid nexthop address" {
		t.Errorf("GoBGP's error field: %v", l)
	}
	// GoBGP's fields come sorted, so the same event always reads the same.
	if first := strings.Split(b.String(), "\n")[0]; !(strings.Index(first, `"Key"`) < strings.Index(first, `"State"`) && strings.Index(first, `"State"`) < strings.Index(first, `"Topic"`)) {
		t.Errorf("fields not in name order: %s", first)
	}
}

func TestPlainIsLogfmtForBothSides(t *testing.T) {
	var b bytes.Buffer
	h := Handler(&b, true)
	NewGoBGP(h, gobgplog.InfoLevel, false).Info("Peer Up", gobgplog.Fields{"Topic": "Peer"})
	slog.New(AtLevel(h, slog.LevelInfo)).Info("prefix confirmed", "prefix", "192.0.2.0/24")
	got := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(got) != 2 || !strings.Contains(got[0], `level=INFO msg="Peer Up" Topic=Peer`) || !strings.Contains(got[1], `level=INFO msg="prefix confirmed" prefix=192.0.2.0/24`) {
		t.Errorf("plain lines:\n%s", b.String())
	}
	for _, l := range got {
		if !strings.HasPrefix(l, "time=") {
			t.Errorf("line without time= first: %q", l)
		}
	}
}

func TestEachSideKeepsItsLevel(t *testing.T) {
	var b bytes.Buffer
	h := Handler(&b, true)
	bgp := NewGoBGP(h, gobgplog.InfoLevel, false)
	var fl slog.LevelVar // fibgate at info
	fibgate := slog.New(AtLevel(h, &fl))

	bgp.Debug("received path", gobgplog.Fields{"Topic": "Peer"})
	fibgate.Debug("fibgate detail")
	if b.Len() != 0 {
		t.Fatalf("debug written at info: %s", b.String())
	}
	// GoBGP's SetLogLevel API raises GoBGP's level alone.
	bgp.SetLevel(gobgplog.DebugLevel)
	if bgp.GetLevel() != gobgplog.DebugLevel {
		t.Errorf("GetLevel = %v after SetLevel(debug)", bgp.GetLevel())
	}
	bgp.Debug("received path", gobgplog.Fields{"Topic": "Peer"})
	fibgate.Debug("fibgate detail")
	if s := b.String(); !strings.Contains(s, "received path") || strings.Contains(s, "fibgate detail") {
		t.Errorf("after GoBGP's SetLevel(debug):\n%s", s)
	}
	b.Reset()
	fl.Set(slog.LevelDebug)
	bgp.SetLevel(gobgplog.WarnLevel)
	bgp.Info("Peer Up", nil)
	fibgate.Debug("fibgate detail")
	if s := b.String(); strings.Contains(s, "Peer Up") || !strings.Contains(s, "fibgate detail") {
		t.Errorf("GoBGP at warn, fibgate at debug:\n%s", s)
	}
}

func TestFatalLikeGobgpd(t *testing.T) {
	for _, c := range []struct {
		name   string
		strict bool
		fields gobgplog.Fields
		level  string
		exit   int
	}{
		{"a config error is a warning", false, gobgplog.Fields{"Topic": "Config", gobgplog.FieldFacility: gobgplog.FacilityConfig}, "WARN", -1},
		{"a config error with --config-strict exits 1", true, gobgplog.Fields{"Topic": "Config", gobgplog.FieldFacility: gobgplog.FacilityConfig}, "ERROR", 1},
		{"any other fatal error exits 1", false, gobgplog.Fields{"Topic": "Peer"}, "ERROR", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			l := NewGoBGP(Handler(&b, false), gobgplog.InfoLevel, c.strict)
			exited := -1
			l.exit = func(code int) { exited = code }
			l.Fatal("bad", c.fields)
			got := lines(t, &b)
			if len(got) != 1 || got[0]["level"] != c.level || got[0]["Topic"] == nil {
				t.Errorf("lines %v, want one at %s with its Topic", got, c.level)
			}
			if exited != c.exit {
				t.Errorf("exit %d, want %d", exited, c.exit)
			}
		})
	}
}

func TestPanicWritesItsLineFirst(t *testing.T) {
	var b bytes.Buffer
	l := NewGoBGP(Handler(&b, false), gobgplog.InfoLevel, false)
	defer func() {
		if r := recover(); r != "broken" {
			t.Errorf("recovered %v, want the message", r)
		}
		if got := lines(t, &b); len(got) != 1 || got[0]["msg"] != "broken" || got[0]["level"] != "ERROR" {
			t.Errorf("lines %v", got)
		}
	}()
	l.Panic("broken", gobgplog.Fields{"Topic": "Table"})
}
