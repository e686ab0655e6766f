// Package deploy holds how fibgate is deployed, and no code: the container
// image (Dockerfile), the systemd units (systemd/), the Kubernetes manifests
// (k8s/) and example settings for each role (examples/). It exists so that
// their tests run with the rest of the module's: they build the binaries
// and check every flag the units, manifests and image use against the
// binaries' --help, load every settings file with the daemons' own code,
// and compare each pasted fallback policy with what fibgated prints, so
// that none of these files can rot unnoticed. README.md says how to use
// them.
package deploy
