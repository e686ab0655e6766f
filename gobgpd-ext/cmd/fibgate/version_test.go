package main

import (
	"bytes"
	"context"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestVersionNamesFibgateGoAndGoBGP: `fibgate version` and `fibgate
// --version` print one line with fibgate's version, the Go release and the
// GoBGP module, without a daemon; extra arguments are a usage error.
func TestVersionNamesFibgateGoAndGoBGP(t *testing.T) {
	want := regexp.MustCompile(`^fibgate \S+ \(` + regexp.QuoteMeta(runtime.Version()) + `, GoBGP v3\.\d+\.\d+\S*\)\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != exitOK || errb.Len() > 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
		if !want.MatchString(out.String()) {
			t.Errorf("%v printed %q, want it to match %s", args, out.String(), want)
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"version", "--json"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "takes no arguments") {
		t.Errorf("version --json: exit %d, stderr %q; want %d and a usage line", code, errb.String(), exitUsage)
	}
	out.Reset()
	run(context.Background(), []string{"--help"}, &out, &errb)
	if !strings.Contains(out.String(), "\n  version ") {
		t.Errorf("--help does not list the version command:\n%s", out.String())
	}
}
