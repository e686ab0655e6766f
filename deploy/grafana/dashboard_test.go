package grafana_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fibgate/fibgate/gobgpd-ext/bgpmetrics"
	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/audit"
)

// exported is what fibgate's metrics look like to a query: each metric's
// labels, and whether it is a histogram (which queries reach through its
// _bucket, _sum and _count series).
type exported struct {
	labels    []string
	histogram bool
}

// recorder is a Registerer that notes every metric a collector describes,
// so names come from the collectors themselves: a metric that Collect emits
// only once a source is attached, or a histogram with no observation yet,
// is known all the same.
type recorder struct {
	prometheus.Registerer
	descs []*prometheus.Desc
}

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		r.descs = append(r.descs, d)
	}
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var (
	descName   = regexp.MustCompile(`fqName: "([^"]*)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// noSpeaker stands in for the Speaker whose state the BGP gauges read.
type noSpeaker struct{}

func (noSpeaker) Kept() int         { return 0 }
func (noSpeaker) NotToEntries() int { return 0 }

// registeredMetrics returns the metrics the daemons register, by name.
func registeredMetrics(t *testing.T) map[string]exported {
	t.Helper()
	reg := prometheus.NewRegistry()
	rec := &recorder{Registerer: reg}
	if _, err := api.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}
	// The daemons with BGP add the audit's and their speaker's (gobgpd-ext,
	// fibgated).
	if err := api.NewAuditMetrics(rec, &audit.Auditor{}); err != nil {
		t.Fatal(err)
	}
	if _, err := bgpmetrics.New(rec); err != nil {
		t.Fatal(err)
	}
	if err := bgpmetrics.RegisterGauges(rec, noSpeaker{}); err != nil {
		t.Fatal(err)
	}
	out := map[string]exported{}
	for _, d := range rec.descs {
		s := d.String()
		m := descName.FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("cannot read the name of %s", s)
		}
		var labels []string
		if l := descLabels.FindStringSubmatch(s); l != nil && strings.TrimSpace(l[1]) != "" {
			for _, x := range strings.Split(l[1], ",") {
				labels = append(labels, strings.TrimSpace(x))
			}
		}
		out[m[1]] = exported{labels: labels}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			e, ok := out[f.GetName()]
			if !ok {
				t.Fatalf("gathered %s, which no collector described", f.GetName())
			}
			e.histogram = true
			out[f.GetName()] = e
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d metrics found (%v): reading them from the collectors broke", len(out), out)
	}
	return out
}

// panel is the part of a Grafana panel the checks look at.
type panel struct {
	ID      *int            `json:"id"`
	Type    string          `json:"type"`
	Title   string          `json:"title"`
	GridPos *gridPos        `json:"gridPos"`
	Targets []target        `json:"targets"`
	Panels  []panel         `json:"panels"` // a collapsed row's
	DS      json.RawMessage `json:"datasource"`
}

type gridPos struct{ X, Y, W, H int }

type target struct {
	RefID string          `json:"refId"`
	Expr  string          `json:"expr"`
	DS    json.RawMessage `json:"datasource"`
}

type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	UID           string  `json:"uid"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	metricRef = regexp.MustCompile(`fibgate_[a-z_]+`)
	// selector is a metric followed by a label selector: name{a="x", b=~"y"}.
	selector = regexp.MustCompile(`(fibgate_[a-z_]+)\{([^}]*)\}`)
	labelIn  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
)

// targetLabels are added by Prometheus when it scrapes, not by fibgate.
var targetLabels = []string{"instance", "job"}

// checkMetrics returns a problem for every fibgate_* name in s that fibgate
// does not export, for a label selector on a label the metric does not have
// and, in a query, for a histogram used without a series suffix (prose may
// name the histogram itself).
func checkMetrics(s string, query bool, known map[string]exported) []string {
	var bad []string
	for _, name := range metricRef.FindAllString(s, -1) {
		if e, ok := known[name]; ok {
			if e.histogram && query {
				bad = append(bad, fmt.Sprintf("histogram %s used without _bucket, _sum or _count", name))
			}
			continue
		}
		base, ok := "", false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, found := strings.CutSuffix(name, suffix); found {
				base, ok = b, true
			}
		}
		if !ok || !known[base].histogram {
			bad = append(bad, fmt.Sprintf("%s is not a metric fibgate exports", name))
		}
	}
	for _, m := range selector.FindAllStringSubmatch(s, -1) {
		name := m[1]
		e, ok := known[name]
		allowed := slices.Concat(e.labels, targetLabels)
		if !ok {
			base, _ := strings.CutSuffix(name, "_bucket")
			e = known[base]
			allowed = slices.Concat(e.labels, targetLabels)
			if base != name {
				allowed = append(allowed, "le")
			}
		}
		for _, l := range labelIn.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(allowed, l[1]) {
				bad = append(bad, fmt.Sprintf("%s has no label %q", name, l[1]))
			}
		}
	}
	return bad
}

// jsonStrings appends every string value in a JSON document but the
// queries' (under "expr"), which checkDashboard checks as queries.
func jsonStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case []any:
		for _, e := range x {
			jsonStrings(e, out)
		}
	case map[string]any:
		for k, e := range x {
			if k != "expr" {
				jsonStrings(e, out)
			}
		}
	}
}

// checkDashboard returns every problem found in a dashboard's JSON.
func checkDashboard(raw []byte, known map[string]exported) []string {
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return []string{fmt.Sprintf("not a dashboard: %v", err)}
	}
	var bad []string
	if d.SchemaVersion < 36 || d.UID == "" {
		bad = append(bad, fmt.Sprintf("schemaVersion %d, uid %q: want a current schema and a stable uid", d.SchemaVersion, d.UID))
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type + " " + string(v.Query)
	}
	if !strings.Contains(vars["datasource"], `datasource "prometheus"`) {
		bad = append(bad, fmt.Sprintf("want a datasource variable for prometheus, have %q", vars["datasource"]))
	}
	if !strings.Contains(vars["instance"], "label_values(fibgate_fib_routes, instance)") {
		bad = append(bad, fmt.Sprintf("want an instance variable from label_values(fibgate_fib_routes, instance), have %q", vars["instance"]))
	}

	ids := map[int]string{}
	var placed []panel
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			name := fmt.Sprintf("panel %q", p.Title)
			switch {
			case p.Title == "":
				bad = append(bad, fmt.Sprintf("a %s panel has no title", p.Type))
			case p.ID == nil:
				bad = append(bad, name+" has no id")
			case ids[*p.ID] != "":
				bad = append(bad, fmt.Sprintf("%s has id %d, like panel %q", name, *p.ID, ids[*p.ID]))
			default:
				ids[*p.ID] = p.Title
			}
			if g := p.GridPos; g == nil {
				bad = append(bad, name+" has no gridPos")
			} else if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				bad = append(bad, fmt.Sprintf("%s has gridPos %+v outside the 24-column grid", name, *g))
			} else {
				placed = append(placed, p)
			}
			if p.Type != "row" {
				if len(p.Targets) == 0 {
					bad = append(bad, name+" has no query")
				}
				if !strings.Contains(string(p.DS), "${datasource}") {
					bad = append(bad, name+" does not use the datasource variable")
				}
			}
			refs := map[string]bool{}
			for _, t := range p.Targets {
				if t.Expr == "" || t.RefID == "" || refs[t.RefID] {
					bad = append(bad, fmt.Sprintf("%s has a query without expr or with a missing or repeated refId %q", name, t.RefID))
				}
				refs[t.RefID] = true
				if !strings.Contains(t.Expr, `instance=~"$instance"`) {
					bad = append(bad, fmt.Sprintf("%s: %s ignores the instance variable", name, t.Expr))
				}
				if !strings.Contains(string(t.DS), "${datasource}") {
					bad = append(bad, fmt.Sprintf("%s: query %s does not use the datasource variable", name, t.RefID))
				}
				bad = append(bad, checkMetrics(t.Expr, true, known)...)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for i, a := range placed {
		for _, b := range placed[:i] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				bad = append(bad, fmt.Sprintf("panels %q and %q overlap", a.Title, b.Title))
			}
		}
	}

	// Every fibgate_* name anywhere else: variables, descriptions.
	var doc any
	_ = json.Unmarshal(raw, &doc)
	var all []string
	jsonStrings(doc, &all)
	for _, s := range all {
		bad = append(bad, checkMetrics(s, false, known)...)
	}
	return bad
}

func readDashboard(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("fibgate.json")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestTheDashboardIsWellFormedAndUsesOnlyExportedMetrics(t *testing.T) {
	known := registeredMetrics(t)
	for _, problem := range checkDashboard(readDashboard(t), known) {
		t.Error(problem)
	}
}

// TestEveryMetricIsOnTheDashboard keeps the dashboard complete when a
// metric is added to plugin/api.
func TestEveryMetricIsOnTheDashboard(t *testing.T) {
	raw := string(readDashboard(t))
	for name, e := range registeredMetrics(t) {
		if e.histogram {
			name += "_bucket"
		}
		if !strings.Contains(raw, name) {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// TestTheChecksCatchMistakes proves the checks above can fail: each broken
// copy of the dashboard must be reported.
func TestTheChecksCatchMistakes(t *testing.T) {
	known := registeredMetrics(t)
	good := string(readDashboard(t))
	tests := []struct {
		name, from, to, want string
	}{
		{"a misspelled metric", "fibgate_confirmations_total", "fibgate_confirmation_total", "fibgate_confirmation_total is not a metric"},
		{"a misspelled gauge", `fibgate_routes{state=\"pending\"`, `fibgate_route{state=\"pending\"`, "fibgate_route is not a metric"},
		{"a histogram without its suffix", "fibgate_time_to_hardware_seconds_bucket", "fibgate_time_to_hardware_seconds", "without _bucket"},
		{"a suffix on a counter", "fibgate_failures_total", "fibgate_failures_total_bucket", "fibgate_failures_total_bucket is not a metric"},
		{"a label the metric lacks", `fibgate_routes{state=\"pending\"`, `fibgate_routes{status=\"pending\"`, `no label "status"`},
		{"a repeated id", `"id": 2,`, `"id": 1,`, "has id 1"},
		{"a missing title", `"title": "Failed now"`, `"title": ""`, "has no title"},
		{"a missing gridPos", `"gridPos"`, `"gridpos_"`, "has no gridPos"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(good, tt.from) {
				t.Fatalf("the dashboard has no %q to break", tt.from)
			}
			bad := strings.Replace(good, tt.from, tt.to, 1)
			problems := checkDashboard([]byte(bad), known)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("no problem mentions %q; got %q", tt.want, problems)
			}
		})
	}
}

// TestTheReadmeExplainsEveryPanel keeps README.md in step with the panels.
func TestTheReadmeExplainsEveryPanel(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(readDashboard(t), &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		if !strings.Contains(string(readme), "**"+p.Title+"**") {
			t.Errorf("README.md does not explain panel %q (as **%s**)", p.Title, p.Title)
		}
	}
}

// TestNoPanelMixesCountsAndRates: a panel's queries are all rates (per
// second) or all counts and durations, so one axis has one unit. The
// routes gauge and the notification rate shared a panel on two axes, which
// read as one scale.
func TestNoPanelMixesCountsAndRates(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(readDashboard(t), &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		rates, others := 0, 0
		for _, q := range p.Targets {
			// histogram_quantile(rate(...)) is a duration, not a rate.
			if strings.Contains(q.Expr, "rate(") && !strings.Contains(q.Expr, "histogram_quantile") {
				rates++
			} else {
				others++
			}
		}
		if rates > 0 && others > 0 {
			t.Errorf("panel %q mixes %d rates with %d counts or durations: split it", p.Title, rates, others)
		}
	}
}
