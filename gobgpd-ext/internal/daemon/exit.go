package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
//
// The line is err's text on one line: a multi-line error (errors.Join)
// is folded with "; ", so an operator and a journal see one line. A
// missing file is blamed on the namespace only when the namespace is what
// is missing: a missing TLS certificate in a namespace is still a missing
// certificate.
func ExitCode(err error, netns string) (int, string) {
	if err == nil {
		return ExitOK, ""
	}
	msg := oneLine(err)
	switch {
	case errors.Is(err, os.ErrNotExist) && netns != "" && !netnsExists(netns):
		return ExitConfig, fmt.Sprintf("network namespace %q does not exist (see `ip netns list`): %s", netns, msg)
	case errors.Is(err, os.ErrPermission):
		return ExitConfig, fmt.Sprintf("%s: run as root or with CAP_NET_ADMIN (and CAP_SYS_ADMIN for a netns)", msg)
	case errors.Is(err, ErrConfig):
		return ExitConfig, msg
	}
	return ExitError, msg
}

// oneLine is err's text with its line breaks folded.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// netnsExists reports whether the named namespace (/run/netns/NAME) is
// there.
func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

// Logger logs at the settings' level in text, to w.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: c.Level()}))
}

// Level is the settings' log_level (Load checked it; "" is info), for a
// caller that brings its own handler (gobgpd-ext shares one with GoBGP).
func (c *Config) Level() slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.LogLevel))
	return l
}
