// Package logstream gives gobgpd-ext one log stream: GoBGP logs through
// its own logger interface (v3 pkg/log), fibgate through log/slog, and
// both end in one slog.Handler, so every line has the same format and goes
// to the same place. Each side keeps its own level: gobgpd's -l flag (and
// GoBGP's SetLogLevel API) for GoBGP, the settings' log_level for fibgate.
package logstream

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// Handler returns the one handler of gobgpd-ext's log, on w: JSON lines,
// gobgpd's default, or logfmt text with plain (gobgpd's -p). It writes
// every level: each side filters by its own.
func Handler(w io.Writer, plain bool) slog.Handler {
	o := &slog.HandlerOptions{Level: slog.LevelDebug}
	if plain {
		return slog.NewTextHandler(w, o)
	}
	return slog.NewJSONHandler(w, o)
}

// GoBGP is GoBGP's logger written to a slog.Handler. Every field GoBGP
// passes (Topic, Key, State, Error, ...) becomes an attribute of the same
// name, sorted by name so that lines are stable. Like gobgpd, a Fatal of
// the config facility is only a warning unless strict, any other Fatal
// exits 1 after its line, and Panic panics after its line.
type GoBGP struct {
	h      slog.Handler
	log    *slog.Logger  // on h
	level  atomic.Uint32 // a gobgplog.LogLevel: the most verbose level written
	strict bool
	exit   func(code int) // os.Exit; tests replace it
}

// NewGoBGP returns GoBGP's logger on h at level (gobgplog.InfoLevel is
// gobgpd's default). strict is gobgpd's --config-strict.
func NewGoBGP(h slog.Handler, level gobgplog.LogLevel, strict bool) *GoBGP {
	l := &GoBGP{h: h, log: slog.New(h), strict: strict, exit: os.Exit}
	l.level.Store(uint32(level))
	return l
}

// Panic writes the line at ERROR and panics with msg, as gobgpd's logrus
// logger does.
func (l *GoBGP) Panic(msg string, f gobgplog.Fields) {
	l.write(gobgplog.PanicLevel, slog.LevelError, msg, f)
	panic(msg)
}

// Fatal writes the line at ERROR and exits 1, except for a config error
// without strict, which gobgpd only warns about.
func (l *GoBGP) Fatal(msg string, f gobgplog.Fields) {
	if f.HasFacility(gobgplog.FacilityConfig) && !l.strict {
		l.write(gobgplog.WarnLevel, slog.LevelWarn, msg, f)
		return
	}
	l.write(gobgplog.FatalLevel, slog.LevelError, msg, f)
	l.exit(1)
}

// Error writes the line at ERROR.
func (l *GoBGP) Error(msg string, f gobgplog.Fields) {
	l.write(gobgplog.ErrorLevel, slog.LevelError, msg, f)
}

// Warn writes the line at WARN.
func (l *GoBGP) Warn(msg string, f gobgplog.Fields) {
	l.write(gobgplog.WarnLevel, slog.LevelWarn, msg, f)
}

// Info writes the line at INFO.
func (l *GoBGP) Info(msg string, f gobgplog.Fields) {
	l.write(gobgplog.InfoLevel, slog.LevelInfo, msg, f)
}

// Debug writes the line at DEBUG. GoBGP logs every received path at
// debug: the level is checked before anything is built (it cost 4% of all
// allocation with a full table when it was not).
func (l *GoBGP) Debug(msg string, f gobgplog.Fields) {
	l.write(gobgplog.DebugLevel, slog.LevelDebug, msg, f)
}

// SetLevel is GoBGP's SetLogLevel API: it changes GoBGP's level only.
func (l *GoBGP) SetLevel(level gobgplog.LogLevel) { l.level.Store(uint32(level)) }

// GetLevel returns GoBGP's level.
func (l *GoBGP) GetLevel() gobgplog.LogLevel { return gobgplog.LogLevel(l.level.Load()) }

func (l *GoBGP) write(at gobgplog.LogLevel, level slog.Level, msg string, f gobgplog.Fields) {
	if uint32(at) > l.level.Load() || !l.h.Enabled(context.Background(), level) {
		return
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, len(keys))
	for i, k := range keys {
		attrs[i] = slog.Any(k, f[k])
	}
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// AtLevel returns h that writes only records at level or above: the
// fibgate side's filter on the handler it shares with GoBGP's logger,
// which filters by its own level.
func AtLevel(h slog.Handler, level slog.Leveler) slog.Handler {
	return &atLevel{h: h, level: level}
}

type atLevel struct {
	h     slog.Handler
	level slog.Leveler
}

func (a *atLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= a.level.Level() && a.h.Enabled(ctx, l)
}
func (a *atLevel) Handle(ctx context.Context, r slog.Record) error { return a.h.Handle(ctx, r) }
func (a *atLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return &atLevel{h: a.h.WithAttrs(as), level: a.level}
}
func (a *atLevel) WithGroup(name string) slog.Handler {
	return &atLevel{h: a.h.WithGroup(name), level: a.level}
}
