package daemon

import (
	"context"
	"os"
	"reflect"
	"strings"
)

// Reload applies what of the settings file, read again on SIGHUP, can
// change while the daemon runs: its gating policy (inline or policy_file),
// as `fibgate policy set` would, when it differs from the one the file
// gave when last read. So a policy changed over the API since then stays
// until the file's own policy changes. applied says a new policy is in
// force; restart lists the other settings whose change takes effect only
// at the next start (by their keys in the file).
func (d *Daemon) Reload(next Config) (applied bool, restart []string, err error) {
	restart = changedKeys(d.cfg, next)
	p := next.GatePolicy()
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if reflect.DeepEqual(p, d.filePolicy) {
		return false, restart, nil
	}
	if err := d.policies.SetPolicy(p); err != nil {
		return false, restart, err
	}
	d.filePolicy = p
	return true, restart, nil
}

// changedKeys lists the top-level settings, by their YAML keys, that
// differ between a and b, the policy aside (Reload applies it).
func changedKeys(a, b Config) []string {
	var out []string
	ta, va, vb := reflect.TypeFor[Config](), reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range ta.NumField() {
		f := ta.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "" || key == "-" || key == "policy" || key == "policy_file" {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, key)
		}
	}
	return out
}

// ReloadWith reads the settings again (read: the settings file, or
// fibgate serve's flags and policy file) and applies them with Reload,
// saying in the log what changed: what SIGHUP does to every daemon. A
// file that does not parse, or a policy the gate refuses, changes nothing.
func (d *Daemon) ReloadWith(read func() (Config, error)) {
	next, err := read()
	if err != nil {
		d.log.Error("reload: the settings are refused; the running ones stay", "err", err)
		return
	}
	applied, restart, err := d.Reload(next)
	switch {
	case err != nil:
		d.log.Error("reload: the settings' gating policy is refused; the running one stays", "err", err)
	case applied:
		d.log.Info("reload: the settings' gating policy is in force", "scopes", len(next.GatePolicy().Scopes))
	default:
		d.log.Info("reload: the settings' gating policy did not change; the running one stays")
	}
	if len(restart) > 0 {
		d.log.Warn("reload: these settings changed and take effect at the next start", "keys", restart)
	}
}

// ReloadOnHangup calls ReloadWith(read) for every signal on hup (the
// caller's SIGHUP) until ctx ends. A nil read has nothing to read again
// (fibgated without -c), which it logs.
func (d *Daemon) ReloadOnHangup(ctx context.Context, hup <-chan os.Signal, read func() (Config, error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if read == nil {
				d.log.Warn("reload: no settings file to read again; nothing changed")
				continue
			}
			d.ReloadWith(read)
		}
	}
}
