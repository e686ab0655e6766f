package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"

	fgd "github.com/fibgate/fibgate/gobgpd-ext/internal/daemon"
	"github.com/fibgate/fibgate/internal/lab"
)

// TestReloadRefusesAddPathSend: a SIGHUP whose config file adds a
// neighbour with ADD-PATH send is refused with an error and the running
// config stays (GoBGP never gets the neighbour); the same neighbour with
// ADD-PATH receive only is applied.
func TestReloadRefusesAddPathSend(t *testing.T) {
	s := server.NewBgpServer(server.LoggerOption(lab.NewLogger(t, gobgplog.ErrorLevel)))
	go s.Serve()
	t.Cleanup(func() {
		if err := stopServer(s); err != nil {
			t.Error(err)
		}
	})
	file := filepath.Join(t.TempDir(), "gobgpd.toml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte("[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n  port = -1\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	neighbour := func(addr, addPaths string) string {
		return "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"" + addr + "\"\n    peer-as = 65003\n" + addPaths
	}
	opts := options{ConfigFile: file, ConfigType: "toml"}
	fcfg := fgd.Defaults()
	gcfg, err := fcfg.GoBGP()
	if err != nil {
		t.Fatal(err)
	}
	x := &setup{opts: opts, fcfg: fcfg, gcfg: gcfg}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx := context.Background()
	peers := func() []string {
		var out []string
		if err := s.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) { out = append(out, p.Conf.NeighborAddress) }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}

	write(neighbour("10.0.0.3", ""))
	cur := reload(ctx, s, nil, gcfg, opts, nil, x.checkFile, log)
	if cur == nil || !slices.Equal(peers(), []string{"10.0.0.3"}) {
		t.Fatalf("first load: config %v, neighbours %v", cur != nil, peers())
	}

	write(neighbour("10.0.0.3", "") + neighbour("10.0.0.4", "  [neighbors.add-paths.config]\n    send-max = 4\n"))
	if got := reload(ctx, s, nil, gcfg, opts, cur, x.checkFile, log); got != cur {
		t.Error("a config with ADD-PATH send replaced the running one")
	}
	if got := peers(); !slices.Equal(got, []string{"10.0.0.3"}) {
		t.Errorf("neighbours after the refused reload: %v", got)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "config file refused") || !strings.Contains(l, "10.0.0.4 (ipv4-unicast send-max 4)") {
		t.Errorf("the refusal is not logged as an error naming the neighbour:\n%s", l)
	}

	write(neighbour("10.0.0.3", "") + neighbour("10.0.0.4", "  [neighbors.add-paths.config]\n    receive = true\n"))
	if got := reload(ctx, s, nil, gcfg, opts, cur, x.checkFile, log); got == cur || !slices.Equal(peers(), []string{"10.0.0.3", "10.0.0.4"}) {
		t.Errorf("ADD-PATH receive: config replaced %v, neighbours %v", got != cur, peers())
	}
}
