package gate

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/fibgate/fibgate/plugin/backoff"
	"github.com/fibgate/fibgate/plugin/fib"
)

// Classifier says whether and how a forwarding route's prefix reaches BGP.
// It sees the route the gate judged, so it can select by protocol, table,
// type or nexthop.
type Classifier func(r *fib.Route) (Origin, bool)

// ByProtocol is the usual classifier: unicast routes installed with the
// transit protocol (fibgate's FIB installer writes "bgp") are transit
// prefixes learned from peers; unicast routes of the originate protocols
// are announced by fibgate itself; nothing else is advertised, so a plain
// kernel or connected route never leaks into BGP by default.
func ByProtocol(transit fib.Protocol, originate ...fib.Protocol) Classifier {
	return ByProtocols([]fib.Protocol{transit}, originate...)
}

// ByProtocols is ByProtocol with more than one transit protocol: routes of
// any of them release what BGP has of their prefix. Besides the
// installer's, the protocol of routes whose paths BGP has from elsewhere,
// such as the connected subnets GoBGP's zebra client redistributes.
func ByProtocols(transit []fib.Protocol, originate ...fib.Protocol) Classifier {
	return func(r *fib.Route) (Origin, bool) {
		switch {
		case r.Type != fib.TypeUnicast:
			return 0, false
		case slices.Contains(transit, r.Protocol):
			return Transit, true
		case slices.Contains(originate, r.Protocol):
			return Originated, true
		}
		return 0, false
	}
}

// WithSpeaker makes the tracker advertise confirmed prefixes through s and
// withdraw them when they stop being confirmed. Without it the tracker only
// judges (Confirmed is then the final state).
func WithSpeaker(s Speaker, c Classifier) TrackerOption {
	return func(t *Tracker) {
		t.adv.speaker, t.adv.classify = s, c
		t.adv.ads = map[prefixKey]struct{}{}
		t.adv.wds = map[prefixKey]Advertisement{}
	}
}

// WithAlreadyOut tells the tracker which prefixes BGP may already be
// advertising when it starts: a restarted daemon whose Speaker adopted
// releases of its predecessor (the hardware still held them). Such a
// prefix counts as out from its first judgement, so if it is not
// confirmed any more it is withdrawn like any advertised prefix. Without
// it the tracker assumes nothing is out at start.
func WithAlreadyOut(out func(netip.Prefix) bool) TrackerOption {
	return func(t *Tracker) { t.adv.alreadyOut = out }
}

// advertiser is the tracker's BGP side: queues of prefixes to release and
// take back, filled under the tracker's lock and flushed outside it.
type advertiser struct {
	speaker    Speaker
	classify   Classifier
	alreadyOut func(netip.Prefix) bool
	ads        map[prefixKey]struct{}
	wds        map[prefixKey]Advertisement
	retryAt    time.Time
	failures   int // calls failed in a row, for speakerRetry
}

// speakerRetry is how a failed Advertise or Withdraw call is retried:
// from 100 ms, doubling to 10 s.
var speakerRetry = backoff.Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second}

func (a *advertiser) pending() bool { return len(a.ads)+len(a.wds) > 0 }

// maxAdvertise is how many prefixes one turn of the tracker releases; the
// rest wait for the next turn, after the events that came meanwhile (a
// loss among them is withdrawn first).
const maxAdvertise = 8192

// advertisement is what the speaker is told of e. Called with t.mu held.
func (t *Tracker) advertisement(k prefixKey, e *entry) Advertisement {
	return Advertisement{Prefix: k.prefix(), Origin: e.st.origin, NextHop: t.hops.get(e.st.nextHop), Version: e.ver}
}

func shouldBeOut(e *entry) bool { return e.st.origin != 0 && up(e.st.State) }

// plan queues what one prefix's new state asks of BGP; clock is the FIB's
// at the judgement. Called with t.mu held.
func (t *Tracker) plan(k prefixKey, clock uint64) {
	a := &t.adv
	if a.speaker == nil {
		return
	}
	e := t.entries.get(k)
	if e == nil {
		return
	}
	if shouldBeOut(e) {
		delete(a.wds, k)
		if e.st.State == Confirmed {
			a.ads[k] = struct{}{}
		}
		return
	}
	delete(a.ads, k)
	switch {
	case e.st.out:
		a.wds[k] = t.advertisement(k, e)
	case e.st.State == Withdrawn && e.st.origin == Transit:
		// Not out, but the speaker may hold a fence for it: the route is
		// gone as of clock, so it can let the fence go.
		a.wds[k] = Advertisement{Prefix: k.prefix(), Origin: Transit, Version: clock}
	}
}

// flush sends the queued take-backs, then up to maxAdvertise of the queued
// advertisements, then the withdrawals that only settle fences, in one
// batch each, and reports whether advertisements are left for the next
// turn. A prefix counts as out from the moment its Advertise is sent, so a
// state change during the call still leads to a Withdraw; it is Advertised
// once the call returns. Failures are retried with exponential backoff
// (100 ms to 10 s); prefixes a speaker refuses as stale wait for their new
// route.
func (t *Tracker) flush(ctx context.Context, now time.Time) (more bool) {
	a := &t.adv
	t.mu.Lock()
	if a.speaker == nil || !a.pending() || now.Before(a.retryAt) {
		t.mu.Unlock()
		return false
	}
	// Take-backs of prefixes that are out (or may be: an entry gone since)
	// go first: a loss must not wait behind a release. A withdrawal of a
	// prefix that is not out only lets the speaker drop a fence (plan), so
	// it goes after the releases and they do not wait for it.
	var out, settle withdrawals
	for k, ad := range a.wds {
		if e := t.entries.get(k); e == nil || e.st.out {
			out.add(k, ad)
		} else {
			settle.add(k, ad)
		}
	}
	n := min(len(a.ads), maxAdvertise)
	adKeys, ads := make([]prefixKey, 0, n), make([]Advertisement, 0, n)
	for k := range a.ads {
		if len(ads) == maxAdvertise {
			more = true
			break
		}
		delete(a.ads, k)
		if e := t.entries.get(k); e != nil && shouldBeOut(e) && e.st.State == Confirmed {
			e.st.out = true
			adKeys, ads = append(adKeys, k), append(ads, t.advertisement(k, e))
		}
	}
	// Emptied queues are made anew: a map keeps the size it once had, and
	// the first release of a full table fills this one with every prefix.
	a.wds = map[prefixKey]Advertisement{}
	if len(a.ads) == 0 {
		a.ads = map[prefixKey]struct{}{}
	}
	t.mu.Unlock()
	sortAds(adKeys, ads)

	failed := t.withdraw(ctx, now, out)
	if len(ads) > 0 {
		began := time.Now()
		err := a.speaker.Advertise(ctx, ads)
		// Advertised when BGP has taken the release: the latency and the
		// stamp include the speaker's call, and an audit that read BGP
		// meanwhile does not count the prefix as out before it was.
		done := time.Now()
		t.timeCall("advertise", len(ads), done.Sub(began))
		var stale map[netip.Prefix]bool
		if se := (*StaleError)(nil); errors.As(err, &se) {
			stale = make(map[netip.Prefix]bool, len(se.Prefixes))
			for _, p := range se.Prefixes {
				stale[p] = true
			}
			t.log.Debug("advertise refused as stale; waiting for the new routes", "prefixes", len(stale))
			err = se.Err
		}
		t.mu.Lock()
		publish := t.hub.Consumers() > 0 // as in judge: Watch subscribes under t.mu
		var changed []RouteState
		for _, k := range adKeys {
			e := t.entries.get(k)
			if e == nil || !shouldBeOut(e) || e.st.State != Confirmed {
				continue // it changed meanwhile; plan has queued what it needs
			}
			if stale[k.prefix()] {
				// BGP's best path moved on: the speaker holds the prefix
				// until the tracker judges the route that follows.
				e.st.out = false
				e.st.Reason = t.texts.of("waiting for the route of BGP's new best path")
				if publish {
					changed = append(changed, t.public(k, e))
				}
				continue
			}
			if err != nil {
				a.ads[k] = struct{}{}
				continue
			}
			t.byState[k.fam()][Confirmed]--
			t.byState[k.fam()][Advertised]++
			at := t.ep.at(done)
			e.st.State, e.st.AdvertisedAt, e.st.Reason, e.st.StateSince = Advertised, at, 0, at
			t.counters.advertised.Add(1)
			if t.observer != nil {
				t.observer.ConfirmToAdvertise(done.Sub(t.ep.time(e.st.ConfirmedAt)))
			}
			if publish {
				changed = append(changed, t.public(k, e))
			}
		}
		slices.SortFunc(changed, compareStates)
		t.hub.Publish(changed)
		t.mu.Unlock()
		if err != nil {
			failed = true
			t.counters.speakerErrors.Add(1)
			t.log.Warn("advertise failed, will retry", "prefixes", len(ads), "err", err)
		}
	}
	if t.withdraw(ctx, now, settle) {
		failed = true
	}
	t.mu.Lock()
	if failed {
		a.retryAt = now.Add(speakerRetry.Delay(a.failures))
		a.failures++
		more = false
	} else {
		a.failures, a.retryAt = 0, time.Time{}
	}
	t.mu.Unlock()
	return more
}

// withdrawals is a batch of a flush's Withdraw.
type withdrawals struct {
	keys []prefixKey
	ads  []Advertisement
}

func (w *withdrawals) add(k prefixKey, ad Advertisement) {
	w.keys, w.ads = append(w.keys, k), append(w.ads, ad)
}

// withdraw sends one batch of a flush's withdrawals and records what the
// speaker did with it; it reports whether the call failed (its prefixes
// are queued again).
func (t *Tracker) withdraw(ctx context.Context, now time.Time, w withdrawals) (failed bool) {
	if len(w.ads) == 0 {
		return false
	}
	a := &t.adv
	sortAds(w.keys, w.ads)
	began := time.Now()
	err := a.speaker.Withdraw(ctx, w.ads)
	t.timeCall("withdraw", len(w.ads), time.Since(began))
	t.mu.Lock()
	for i, k := range w.keys {
		e := t.entries.get(k)
		switch {
		case err != nil:
			if _, again := a.wds[k]; !again && (e == nil || !shouldBeOut(e)) {
				a.wds[k] = w.ads[i]
			}
		case e != nil && !shouldBeOut(e) && e.st.out:
			// Not published: watchers got the state that caused the
			// withdrawal when it was judged, and this one differs from it
			// only in WithdrawnAt (it printed every such change twice).
			// List and Get show the time; watchers get it with the
			// prefix's next change.
			e.st.out = false
			e.st.WithdrawnAt = t.ep.at(now)
			t.counters.withdrawn.Add(1)
		}
	}
	t.mu.Unlock()
	if err != nil {
		t.counters.speakerErrors.Add(1)
		t.log.Warn("withdraw failed, will retry", "prefixes", len(w.ads), "err", err)
		return true
	}
	return false
}

// timeCall reports a speaker call to a CallObserver.
func (t *Tracker) timeCall(call string, n int, d time.Duration) {
	if o, ok := t.observer.(CallObserver); ok {
		o.SpeakerCall(call, n, d)
	}
}

// sortAds orders a batch by prefix, so speakers and logs see a stable order.
func sortAds(keys []prefixKey, ads []Advertisement) {
	idx := make([]int, len(ads))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int {
		if c := ads[i].Prefix.Addr().Compare(ads[j].Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(ads[i].Prefix.Bits(), ads[j].Prefix.Bits())
	})
	k2, a2 := slices.Clone(keys), slices.Clone(ads)
	for to, from := range idx {
		keys[to], ads[to] = k2[from], a2[from]
	}
}
