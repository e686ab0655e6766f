// Command settingsdump prints fibgate settings files the way the daemons
// resolve them, for deploy's tests. It imports gobgpd-ext/internal/daemon,
// which Go's internal rule forbids deploy/ to do, so the tests build it with
// `go build -overlay` as if it lived under gobgpd-ext/internal/daemon/: no
// file outside deploy/ exists for it.
//
//	settingsdump [FILE|-]...
//
// prints one JSON object per argument, in order: "-" is Defaults(), a FILE
// is daemon.Load(FILE). Each object holds "settings" (the Config as YAML,
// the inline policy node left out) and "policy" (the gating policy it
// resolves to). A file that does not load is an error (exit status 2).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/fibgate/fibgate/gobgpd-ext/internal/daemon"
)

type dump struct {
	Settings string `json:"settings"`
	Policy   any    `json:"policy"`
}

func main() {
	enc := json.NewEncoder(os.Stdout)
	for _, arg := range os.Args[1:] {
		c := daemon.Defaults()
		if arg != "-" {
			var err error
			if c, err = daemon.Load(arg); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
		policy := c.GatePolicy()
		c.Policy = yaml.Node{} // resolved into policy; its node carries line numbers
		b, err := yaml.Marshal(&c)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := enc.Encode(dump{Settings: string(b), Policy: policy}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
