package kernel

import (
	"bufio"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fixtures are recorded by TestRecord (record_test.go) and read here, on
// any platform: the codec tests need no kernel.

// fixtureMsg is one recorded message.
type fixtureMsg struct {
	kind string // "notify" or "dump"
	cmd  string // the command that caused a notification
	msg  []byte
}

// loadFixture reads testdata/recorded/NAME.txt.
func loadFixture(tb testing.TB, name string) []fixtureMsg {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", "recorded", name+".txt"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []fixtureMsg
	cmd := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "# $ ip "); ok {
			cmd = c
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		kind, hx, ok := strings.Cut(line, " ")
		if !ok {
			tb.Fatalf("%s: bad line %q", name, line)
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		if kind == "dump" {
			cmd = ""
		}
		out = append(out, fixtureMsg{kind, cmd, b})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// allFixtures loads every recorded fixture.
func allFixtures(tb testing.TB) map[string][]fixtureMsg {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "recorded", "*.txt"))
	if err != nil || len(files) == 0 {
		tb.Fatal("no fixtures in testdata/recorded:", errors.Join(err, errors.New("run TestRecord -record")))
	}
	out := map[string][]fixtureMsg{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		out[name] = loadFixture(tb, name)
	}
	return out
}
