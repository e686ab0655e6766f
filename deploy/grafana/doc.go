// Package grafana holds fibgate's Grafana dashboard (fibgate.json) and no
// code: it exists so that the dashboard's test, which checks the panels'
// layout and that every metric the queries use is one fibgate exports, runs
// with the rest of the module's tests and cannot rot unnoticed.
package grafana
