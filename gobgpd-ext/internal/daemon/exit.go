package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Exit statuses of the daemons, as their --help documents: 2 is for what
// the operator fixes (flags, settings, a missing namespace, privileges).
const (
	ExitOK     = 0
	ExitError  = 1
	ExitConfig = 2
)

// ExitCode maps a daemon's error to its exit status and the one line to
// print, naming the fix where there is one.
func ExitCode(err error, netns string) (int, string) {
	switch {
	case err == nil:
		return ExitOK, ""
	case errors.Is(err, os.ErrNotExist) && netns != "":
		return ExitConfig, fmt.Sprintf("network namespace %q does not exist (see `ip netns list`): %v", netns, err)
	case errors.Is(err, os.ErrPermission):
		return ExitConfig, fmt.Sprintf("%v: run as root or with CAP_NET_ADMIN (and CAP_SYS_ADMIN for a netns)", err)
	case errors.Is(err, ErrConfig):
		return ExitConfig, err.Error()
	}
	return ExitError, err.Error()
}

// Logger logs at the settings' level in text, to w.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.LogLevel))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
