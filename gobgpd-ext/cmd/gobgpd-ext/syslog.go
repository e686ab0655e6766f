package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"log/syslog"
	"strings"
	"sync"
	"time"

	"github.com/getsentry/sentry-go"

	"github.com/fibgate/fibgate/gobgpd-ext/internal/logstream"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/version"
)

// facilities are gobgpd's --syslog-facility names; any other name, or
// none, is facility 0 (kern), as gobgpd has it, so a syslog filter written
// for gobgpd keeps matching gobgpd-ext.
var facilities = map[string]syslog.Priority{
	"kern": syslog.LOG_KERN, "user": syslog.LOG_USER, "mail": syslog.LOG_MAIL, "daemon": syslog.LOG_DAEMON,
	"auth": syslog.LOG_AUTH, "syslog": syslog.LOG_SYSLOG, "lpr": syslog.LOG_LPR, "news": syslog.LOG_NEWS,
	"uucp": syslog.LOG_UUCP, "cron": syslog.LOG_CRON, "authpriv": syslog.LOG_AUTHPRIV, "ftp": syslog.LOG_FTP,
	"local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1, "local2": syslog.LOG_LOCAL2, "local3": syslog.LOG_LOCAL3,
	"local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5, "local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7,
}

// dialSyslog connects to the syslog daemon gobgpd's --syslog names:
// "NETWORK:ADDRESS" (udp:10.0.0.1:514, tcp:..., unix:/dev/log) or any
// other value (gobgpd's docs say "yes") for the local one. The tag is
// "bgpd", gobgpd's.
func dialSyslog(dst, facility string) (*syslog.Writer, error) {
	network, addr := "", ""
	if n, a, ok := strings.Cut(dst, ":"); ok {
		network, addr = n, a
	}
	return syslog.Dial(network, addr, syslog.LOG_INFO|facilities[facility], "bgpd")
}

// syslogHandler writes each record, formatted as on stderr (JSON, or text
// with --log-plain), to syslog at the record's severity.
type syslogHandler struct {
	w   *syslog.Writer
	mu  *sync.Mutex
	buf *bytes.Buffer
	h   slog.Handler // formats into buf
}

func newSyslogHandler(w *syslog.Writer, plain bool) *syslogHandler {
	buf := &bytes.Buffer{}
	return &syslogHandler{w: w, mu: &sync.Mutex{}, buf: buf, h: logstream.Handler(buf, plain)}
}

func (s *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool { return s.h.Enabled(ctx, l) }

func (s *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Reset()
	if err := s.h.Handle(ctx, r); err != nil {
		return err
	}
	line := strings.TrimRight(s.buf.String(), "\n")
	switch {
	case r.Level >= slog.LevelError:
		return s.w.Err(line)
	case r.Level >= slog.LevelWarn:
		return s.w.Warning(line)
	case r.Level >= slog.LevelInfo:
		return s.w.Info(line)
	}
	return s.w.Debug(line)
}

func (s *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *s
	c.h = s.h.WithAttrs(as)
	return &c
}

func (s *syslogHandler) WithGroup(name string) slog.Handler {
	c := *s
	c.h = s.h.WithGroup(name)
	return &c
}

// startSentry does what gobgpd's --sentry-dsn does: errors and panics of
// the process may be reported to Sentry, tracing off; with --sentry-debug
// one message says so at start. The returned func flushes what is queued
// (at most 2 s) and is called at exit.
func startSentry(opts options) (flush func(), err error) {
	if opts.SentryDSN == "" {
		return func() {}, nil
	}
	err = sentry.Init(sentry.ClientOptions{
		Dsn:              opts.SentryDSN,
		SampleRate:       opts.SentrySampleRate,
		Debug:            opts.SentryDebug,
		Release:          version.Get().String(),
		Environment:      opts.SentryEnvironment,
		EnableTracing:    false,
		TracesSampleRate: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("--sentry-dsn: %w", err)
	}
	if opts.SentryDebug {
		sentry.CaptureMessage("Sentry debug mode enabled on gobgpd-ext")
	}
	return func() { sentry.Flush(2 * time.Second) }, nil
}
