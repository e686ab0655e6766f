//go:build linux

package kernel

import (
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// Helpers for tests against the real kernel. Each test gets a throwaway
// network namespace, so tests run in parallel with each other and with the
// host untouched.

// The namespace helpers are kerneltest's; these short names keep the
// package's many real-kernel tests readable.
var (
	requireNetAdmin = kerneltest.RequireNetAdmin
	newTestNS       = kerneltest.NewNS
	ipn             = kerneltest.IP
	nsExec          = kerneltest.Exec
	ipBatch         = kerneltest.Batch
	addTestLink     = kerneltest.AddLink
)

// linkIndex returns the ifindex of a link in the namespace.
func linkIndex(tb testing.TB, ns, name string) int {
	tb.Helper()
	links, err := DumpLinks(Options{NetNS: ns})
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range links {
		if l.Name == name {
			return l.Index
		}
	}
	tb.Fatalf("no link %q in netns %s", name, ns)
	return 0
}

// testSubscribe subscribes in ns with a default-sized buffer and closes the
// subscription when the test ends.
func testSubscribe(tb testing.TB, ns string) *Subscription {
	tb.Helper()
	s, err := Subscribe(Options{NetNS: ns})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// waitMessage receives until match accepts a decoded message or the
// deadline passes (a failure). Messages are decoded with Decode; skipped
// ones are ignored. It is how tests wait for the kernel without sleeping.
func waitMessage(tb testing.TB, s *Subscription, what string, match func(any) bool) any {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	if err := s.SetReadDeadline(deadline); err != nil {
		tb.Fatal(err)
	}
	defer s.SetReadDeadline(time.Time{})
	var seen []string
	for {
		msgs, err := s.Receive()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			tb.Fatalf("no %s within 5s; saw:\n%s", what, strings.Join(seen, "\n"))
		}
		if err != nil {
			tb.Fatalf("waiting for %s: %v", what, err)
		}
		for _, b := range msgs {
			v, err := Decode(b)
			if errors.Is(err, ErrSkip) {
				continue
			}
			if err != nil {
				tb.Fatalf("waiting for %s: %v", what, err)
			}
			if match(v) {
				return v
			}
			seen = append(seen, describe(v))
		}
	}
}

// drain returns the messages already queued on s, without waiting. The
// kernel queues notifications before it acknowledges the request that
// caused them, so after an `ip` command returns, its notifications are
// all there.
func drain(tb testing.TB, s *Subscription) [][]byte {
	tb.Helper()
	var out [][]byte
	for {
		msgs, err := s.receiveNow()
		if err != nil {
			tb.Fatal(err)
		}
		if len(msgs) == 0 {
			return out
		}
		for _, m := range msgs {
			out = append(out, append([]byte(nil), m...))
		}
	}
}

// describe renders a decoded message for test failures.
func describe(v any) string {
	switch m := v.(type) {
	case RouteMessage:
		kind := "NEWROUTE"
		if m.Type == rtmDelRoute {
			kind = "DELROUTE"
		}
		return kind + " nlflags=" + nlFlagsString(m.NLFlags) + " " + m.Route.String()
	case LinkMessage:
		return "LINK " + m.Name
	case AddrMessage:
		return "ADDR " + m.Prefix.String()
	}
	return "?"
}

// nlFlagsString names the nlmsg flags of change notifications.
func nlFlagsString(f uint16) string {
	var parts []string
	for _, n := range []struct {
		bit  uint16
		name string
	}{{0x100, "REPLACE"}, {0x200, "EXCL"}, {0x400, "CREATE"}, {0x800, "APPEND"}, {0x2, "MULTI"}} {
		if f&n.bit != 0 {
			parts = append(parts, n.name)
			f &^= n.bit
		}
	}
	if f != 0 {
		parts = append(parts, "0x"+hex.EncodeToString([]byte{byte(f >> 8), byte(f)}))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "|")
}
