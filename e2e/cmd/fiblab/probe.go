package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/fibgate/fibgate/e2e/clab"
	"github.com/fibgate/fibgate/e2e/probe"
)

// grace is how long after a second ends its probes may still arrive; one
// that has not arrived anywhere by then counts as lost. Probes cross the
// lab in well under a millisecond, and one caught in a loop dies with its
// TTL within milliseconds.
const grace = 250 * time.Millisecond

// probeOptions are the flags of `fiblab probe`.
type probeOptions struct {
	from  string
	to    []netip.Addr
	rate  int
	dur   time.Duration
	state clab.State
}

// parseTo reads -to: addresses separated by commas.
func parseTo(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("-to %q: %q is not an IP address", s, f)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, errors.New("-to: give the addresses to probe, like -to 192.0.2.10,2001:db8:10::10")
	}
	return out, nil
}

// runProbe sends probes across a running lab and prints, once a second,
// how many of the last second's probes arrived nowhere and where the others
// went, until ctx ends or o.dur has passed; then the totals.
func runProbe(ctx context.Context, o probeOptions, stdout io.Writer) error {
	from, ok := o.state.Namespaces[o.from]
	if !ok {
		return fmt.Errorf("-from %s: lab %s has no node %s with its own network namespace (it has %s)",
			o.from, o.state.Name, o.from, strings.Join(nodesOf(o.state), ", "))
	}
	at := map[string]string{}
	for n, ns := range o.state.Namespaces {
		if n != o.from {
			at[n] = ns
		}
	}
	every := time.Second / time.Duration(o.rate)
	p, err := probe.Start(probe.Config{From: from, To: o.to, At: at, Every: every})
	if err != nil {
		return err
	}
	defer p.Close()

	w := bufio.NewWriter(stdout)
	defer w.Flush()
	var where []string
	for _, dst := range o.to {
		where = append(where, fmt.Sprintf("%s (at %s)", dst, strings.Join(p.Receivers(dst), ", ")))
	}
	fmt.Fprintf(w, "probing %s from %s, %d a second each\n", strings.Join(where, " and "), o.from, o.rate)
	fmt.Fprintf(w, "lost: probes no node received within %v; Ctrl-C stops and prints the totals\n\n", grace)
	fmt.Fprintf(w, "%-10s", "time")
	for i, dst := range o.to {
		if i < len(o.to)-1 {
			fmt.Fprintf(w, "  %-*s", columnWidth, dst)
		} else {
			fmt.Fprintf(w, "  %s", dst)
		}
	}
	fmt.Fprintln(w)
	w.Flush()

	totals := make([]outage, len(o.to))
	start := time.Now().Truncate(time.Second).Add(time.Second) // the first whole second
	end := time.Time{}
	if o.dur > 0 {
		end = start.Add(o.dur)
	}
	for sec := start; end.IsZero() || sec.Before(end); sec = sec.Add(time.Second) {
		select {
		case <-ctx.Done():
			return printTotals(w, o.to, totals, every)
		case <-time.After(time.Until(sec.Add(time.Second + grace))):
		}
		fmt.Fprintf(w, "%-10s", sec.Format("15:04:05"))
		for i, dst := range o.to {
			var sent, lost int
			got := map[string]int{}
			p.Each(dst, sec, sec.Add(time.Second), func(ts time.Time, at string) {
				sent++
				if at == "" {
					lost++
				} else {
					got[at]++
				}
				totals[i].add(ts, at == "")
			})
			cell := fmt.Sprintf("lost %4d of %4d%s", lost, sent, receivedAt(got))
			if i < len(o.to)-1 {
				cell = fmt.Sprintf("%-*s", columnWidth, cell)
			}
			fmt.Fprintf(w, "  %s", cell)
		}
		fmt.Fprintln(w)
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	return printTotals(w, o.to, totals, every)
}

// columnWidth fits "lost 1000 of 1000 (host1 1000, host2 1000)".
const columnWidth = 42

// receivedAt lists where probes arrived, busiest first: " (host1 255)".
func receivedAt(got map[string]int) string {
	if len(got) == 0 {
		return ""
	}
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if got[a] != got[b] {
			return got[b] - got[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", n, got[n])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// outage adds up one destination's probes and its longest run of lost ones.
type outage struct {
	sent, lost    int
	run, longest  int
	runAt, longAt time.Time
}

func (o *outage) add(sent time.Time, lost bool) {
	o.sent++
	if !lost {
		o.run = 0
		return
	}
	o.lost++
	if o.run == 0 {
		o.runAt = sent
	}
	o.run++
	if o.run > o.longest {
		o.longest, o.longAt = o.run, o.runAt
	}
}

func printTotals(w *bufio.Writer, to []netip.Addr, totals []outage, every time.Duration) error {
	fmt.Fprintln(w)
	for i, dst := range to {
		t := totals[i]
		fmt.Fprintf(w, "%s: lost %d of %d", dst, t.lost, t.sent)
		if t.longest > 0 {
			fmt.Fprintf(w, "; longest outage %v (%d in a row from %s)", (time.Duration(t.longest) * every).Round(time.Millisecond),
				t.longest, t.longAt.Format("15:04:05.000"))
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

func nodesOf(s clab.State) []string {
	var out []string
	for n := range s.Namespaces {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
