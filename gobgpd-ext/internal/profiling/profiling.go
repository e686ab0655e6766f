// Package profiling registers Go's profiler (net/http/pprof) on a mux, so
// gobgpd-ext's --pprof-host and fibgated's --pprof serve the same paths.
package profiling

import (
	"net/http"
	"net/http/pprof"
)

// Register adds /debug/pprof/ and its named handlers to mux.
func Register(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
