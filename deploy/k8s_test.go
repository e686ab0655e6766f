package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The Kubernetes objects the manifests use, with the fields they use:
// decoding with KnownFields makes a misspelt or misplaced field an error
// (a small, offline stand-in for the API's schema; see deploy/README.md).

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

type namespace struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
}

type serviceAccount struct {
	typeMeta                     `yaml:",inline"`
	Metadata                     objectMeta `yaml:"metadata"`
	AutomountServiceAccountToken *bool      `yaml:"automountServiceAccountToken"`
}

type configMap struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta        `yaml:"metadata"`
	Data     map[string]string `yaml:"data"`
}

type daemonSet struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		UpdateStrategy struct {
			Type          string `yaml:"type"`
			RollingUpdate struct {
				MaxUnavailable any `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"updateStrategy"`
		MinReadySeconds int `yaml:"minReadySeconds"`
		Template        struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	ServiceAccountName            string            `yaml:"serviceAccountName"`
	AutomountServiceAccountToken  *bool             `yaml:"automountServiceAccountToken"`
	HostNetwork                   bool              `yaml:"hostNetwork"`
	DNSPolicy                     string            `yaml:"dnsPolicy"`
	NodeSelector                  map[string]string `yaml:"nodeSelector"`
	TerminationGracePeriodSeconds int               `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsUser      *int64 `yaml:"runAsUser"`
		RunAsGroup     *int64 `yaml:"runAsGroup"`
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		EmptyDir *struct {
			Medium    string `yaml:"medium"`
			SizeLimit string `yaml:"sizeLimit"`
		} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	RestartPolicy   string   `yaml:"restartPolicy"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type probe struct {
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type kustomization struct {
	typeMeta  `yaml:",inline"`
	Namespace string   `yaml:"namespace"`
	Resources []string `yaml:"resources"`
	Labels    []struct {
		Pairs map[string]string `yaml:"pairs"`
	} `yaml:"labels"`
	Images []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// decodeStrict decodes one YAML document into v, refusing unknown fields.
func decodeStrict(doc *yaml.Node, v any) error {
	b, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// manifests holds the objects of deploy/k8s by kind.
type manifests struct {
	kust       kustomization
	namespaces []namespace
	accounts   []serviceAccount
	configMaps []configMap
	daemonSets []daemonSet
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	var m manifests
	b, err := os.ReadFile(filepath.Join("k8s", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&m.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if m.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || m.kust.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml is %s %s", m.kust.APIVersion, m.kust.Kind)
	}
	files, _ := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	var listed []string
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" {
			listed = append(listed, filepath.Base(f))
		}
	}
	if got := slices.Sorted(slices.Values(m.kust.Resources)); !slices.Equal(got, listed) {
		t.Errorf("kustomization.yaml lists %v; k8s/ holds %v", got, listed)
	}
	for _, f := range m.kust.Resources {
		b, err := os.ReadFile(filepath.Join("k8s", f))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			var doc yaml.Node
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var tm typeMeta
			if err := doc.Decode(&tm); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var obj any
			var meta *objectMeta
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Namespace":
				m.namespaces = append(m.namespaces, namespace{})
				obj, meta = &m.namespaces[len(m.namespaces)-1], &m.namespaces[len(m.namespaces)-1].Metadata
			case "v1 ServiceAccount":
				m.accounts = append(m.accounts, serviceAccount{})
				obj, meta = &m.accounts[len(m.accounts)-1], &m.accounts[len(m.accounts)-1].Metadata
			case "v1 ConfigMap":
				m.configMaps = append(m.configMaps, configMap{})
				obj, meta = &m.configMaps[len(m.configMaps)-1], &m.configMaps[len(m.configMaps)-1].Metadata
			case "apps/v1 DaemonSet":
				m.daemonSets = append(m.daemonSets, daemonSet{})
				obj, meta = &m.daemonSets[len(m.daemonSets)-1], &m.daemonSets[len(m.daemonSets)-1].Metadata
			default:
				t.Fatalf("%s document %d: unexpected %q %q", f, i, tm.APIVersion, tm.Kind)
			}
			if err := decodeStrict(&doc, obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, tm.Kind, err)
			}
			if meta.Name == "" {
				t.Errorf("%s document %d: %s without a name", f, i, tm.Kind)
			}
			if tm.Kind != "Namespace" && meta.Namespace != m.kust.Namespace {
				t.Errorf("%s: %s %s is in namespace %q, the kustomization's is %q", f, tm.Kind, meta.Name, meta.Namespace, m.kust.Namespace)
			}
		}
	}
	return m
}

// mountedFile finds the ConfigMap key a container sees at file: the
// volume mounted at file's directory and the key named like file.
func (m manifests) mountedFile(t *testing.T, ps podSpec, c container, file string) string {
	t.Helper()
	dir, key := path.Split(file)
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) != path.Clean(dir) {
			continue
		}
		if !vm.ReadOnly {
			t.Errorf("%s: %s is mounted read-write", c.Name, vm.MountPath)
		}
		for _, v := range ps.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			for _, cm := range m.configMaps {
				if cm.Metadata.Name == v.ConfigMap.Name {
					if data, ok := cm.Data[key]; ok {
						return data
					}
				}
			}
		}
	}
	t.Fatalf("%s: no ConfigMap key is mounted at %s", c.Name, file)
	return ""
}

func findContainer(t *testing.T, cs []container, name string) container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return container{}
}

// TestKubernetesManifests checks deploy/k8s: every document is a known kind
// with known fields in the kustomization's namespace; the DaemonSet runs
// gobgpd as a native sidecar (so that it starts before fibgated and stops
// after it), both containers from the image with flags their --help lists,
// on the host's network, as UID 0 with all capabilities dropped but the one
// each needs; the fibgate API socket's directory is an emptyDir, and the
// probes' commands are valid; fibgated's settings pass fibgated --check
// and write no sysctl (read-only in a container); gobgpd's config carries
// the fallback policy fibgated prints for those settings, first in its
// export chain, and GoBGP accepts it.
func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	if len(m.namespaces) != 1 || m.namespaces[0].Metadata.Name != m.kust.Namespace {
		t.Errorf("want one Namespace, named %q like the kustomization's", m.kust.Namespace)
	} else if l := m.namespaces[0].Metadata.Labels["pod-security.kubernetes.io/enforce"]; l != "privileged" {
		t.Errorf("namespace enforces pod security %q: hostNetwork and NET_ADMIN need privileged", l)
	}
	if len(m.accounts) != 1 || m.accounts[0].AutomountServiceAccountToken == nil || *m.accounts[0].AutomountServiceAccountToken {
		t.Error("want one ServiceAccount with automountServiceAccountToken: false (nothing talks to the API server)")
	}
	if len(m.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets, want 1", len(m.daemonSets))
	}
	ds := m.daemonSets[0]
	ps := ds.Spec.Template.Spec
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the pod template lacks the selector's label %s=%s", k, v)
		}
	}
	if ps.ServiceAccountName != m.accounts[0].Metadata.Name {
		t.Errorf("serviceAccountName %q, want %q", ps.ServiceAccountName, m.accounts[0].Metadata.Name)
	}
	if !ps.HostNetwork || ps.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("hostNetwork %v, dnsPolicy %q: want true, ClusterFirstWithHostNet", ps.HostNetwork, ps.DNSPolicy)
	}
	sc := ps.SecurityContext
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsNonRoot == nil || *sc.RunAsNonRoot || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Error("pod securityContext: want runAsUser 0, runAsNonRoot false (added capabilities reach UID 0 only) and seccomp RuntimeDefault")
	}
	if ps.TerminationGracePeriodSeconds < int(shutdownTimeout(t).Seconds())+10 {
		t.Errorf("terminationGracePeriodSeconds %d: want fibgated's shutdown bound (%s) plus time for gobgpd", ps.TerminationGracePeriodSeconds, shutdownTimeout(t))
	}
	if len(ps.InitContainers) != 1 || len(ps.Containers) != 1 {
		t.Fatalf("%d init containers and %d containers: want gobgpd as the one (native sidecar) init container and fibgated as the container", len(ps.InitContainers), len(ps.Containers))
	}
	gobgpd := findContainer(t, ps.InitContainers, "gobgpd")
	fibgated := findContainer(t, ps.Containers, "fibgated")
	if gobgpd.RestartPolicy != "Always" {
		t.Errorf("gobgpd restartPolicy %q: want Always (a native sidecar: up before fibgated starts, down only after it stopped)", gobgpd.RestartPolicy)
	}
	if gobgpd.StartupProbe == nil {
		t.Error("gobgpd has no startupProbe: fibgated would start before gobgpd's API answers")
	}
	images := map[string]bool{}
	for _, img := range m.kust.Images {
		images[img.Name] = true
	}
	caps := map[string][]string{"gobgpd": {"NET_BIND_SERVICE"}, "fibgated": {"NET_ADMIN"}}
	for _, c := range []container{gobgpd, fibgated} {
		if !images[c.Image] {
			t.Errorf("%s: image %q is not set by the kustomization's images", c.Name, c.Image)
		}
		s := c.SecurityContext
		if s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation || !s.ReadOnlyRootFilesystem {
			t.Errorf("%s: want allowPrivilegeEscalation false and readOnlyRootFilesystem true", c.Name)
		}
		if !slices.Equal(s.Capabilities.Drop, []string{"ALL"}) || !slices.Equal(s.Capabilities.Add, caps[c.Name]) {
			t.Errorf("%s: capabilities drop %v add %v, want drop [ALL] add %v", c.Name, s.Capabilities.Drop, s.Capabilities.Add, caps[c.Name])
		}
		if len(c.Command) != 1 || c.Command[0] != "/usr/local/bin/"+c.Name {
			t.Errorf("%s: command %q, want [/usr/local/bin/%s]", c.Name, c.Command, c.Name)
		}
		for _, p := range []*probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if p == nil {
				continue
			}
			if p.Exec == nil || !strings.HasPrefix(p.Exec.Command[0], "/usr/local/bin/") {
				t.Errorf("%s: a probe that is not an exec of a binary of the image", c.Name)
				continue
			}
			checkCommand(t, p.Exec.Command)
		}
	}
	// Memory limits, each the figure deploy/README.md gives for it.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []container{gobgpd, fibgated} {
		req, lim := c.Resources.Requests["memory"], c.Resources.Limits["memory"]
		rb, lb := mebibytes(req), mebibytes(lim)
		if rb <= 0 || lb < rb {
			t.Errorf("%s: memory request %q, limit %q: want both, the limit at least the request", c.Name, req, lim)
		}
		if !strings.Contains(string(readme), lim+" for "+c.Name) {
			t.Errorf("%s: memory limit %s is not the one README.md documents (%q)", c.Name, lim, lim+" for "+c.Name)
		}
	}
	if fibgated.ReadinessProbe == nil || fibgated.LivenessProbe == nil || gobgpd.LivenessProbe == nil {
		t.Error("want readiness and liveness probes on fibgated and a liveness probe on gobgpd")
	}

	gv := checkCommand(t, append(slices.Clone(gobgpd.Command), gobgpd.Args...))
	fv := checkCommand(t, append(slices.Clone(fibgated.Command), fibgated.Args...))
	if host, _, err := net.SplitHostPort(gv["--api-hosts"]); err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("gobgpd --api-hosts %q: want a loopback address (the API is unauthenticated, and the pod is on the host's network)", gv["--api-hosts"])
	}
	if fv["--gobgpd"] != gv["--api-hosts"] {
		t.Errorf("fibgated --gobgpd %q, gobgpd --api-hosts %q", fv["--gobgpd"], gv["--api-hosts"])
	}

	// fibgated's settings.
	settings := filepath.Join(t.TempDir(), "fibgate.yaml")
	if err := os.WriteFile(settings, []byte(m.mountedFile(t, ps, fibgated, fv["-c"])), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "fibgated", "--check", "-c", settings)
	r := dumpSettings(t, settings)[0]
	if r.get("notify_mode") != "" || r.get("netns") != "" {
		t.Errorf("fibgate.yaml sets notify_mode %q / netns %q: a container's /proc/sys is read-only and entering a netns needs CAP_SYS_ADMIN; set the sysctl on the node", r.get("notify_mode"), r.get("netns"))
	}
	sock, _ := r.get("api.socket").(string)
	var runMount string
	for _, vm := range fibgated.VolumeMounts {
		if path.Clean(vm.MountPath) == path.Dir(sock) {
			runMount = vm.Name
		}
	}
	var emptyDir bool
	for _, v := range ps.Volumes {
		emptyDir = emptyDir || (v.Name == runMount && v.EmptyDir != nil)
	}
	if !emptyDir {
		t.Errorf("the API socket's directory %s is not an emptyDir mounted in fibgated", path.Dir(sock))
	}
	for _, p := range []*probe{fibgated.ReadinessProbe, fibgated.LivenessProbe} {
		if p == nil || p.Exec == nil {
			continue
		}
		pv := checkCommand(t, p.Exec.Command)
		if pv["--socket"] != sock {
			t.Errorf("fibgated probe asks %q, the API is at %q", pv["--socket"], sock)
		}
		if to, ok := pv["--timeout"]; !ok || to == "" || p.TimeoutSeconds == 0 {
			t.Error("fibgated probe: want fibgate's --timeout below the probe's timeoutSeconds")
		}
	}
	if addr, _ := r.get("metrics").(string); addr != "" {
		_, port, _ := net.SplitHostPort(addr)
		var declared bool
		for _, p := range fibgated.Ports {
			declared = declared || strconv.Itoa(p.ContainerPort) == port
		}
		if !declared {
			t.Errorf("metrics on %s, but fibgated declares no containerPort %s", addr, port)
		}
	}

	// gobgpd's config.
	checkGobgpdConfig(t, m.mountedFile(t, ps, gobgpd, gv["-f"]), settings, false)
}

// TestKustomizeBuild renders deploy/k8s with kubectl's built-in kustomize
// (when kubectl is installed; it needs no cluster).
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	out, err := exec.Command(kubectl, "kustomize", "k8s").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize k8s: %v\n%s", err, out)
	}
	if n := strings.Count("\n"+string(out), "\nkind: "); n != 5 {
		t.Errorf("kubectl kustomize rendered %d objects, want 5 (namespace, service account, 2 config maps, daemon set):\n%s", n, out)
	}
}

// mebibytes reads a Kubernetes memory quantity in Mi or Gi (what the
// manifests use); -1 for anything else.
func mebibytes(q string) int {
	for suffix, mul := range map[string]int{"Mi": 1, "Gi": 1024} {
		if n, ok := strings.CutSuffix(q, suffix); ok {
			if v, err := strconv.Atoi(n); err == nil {
				return v * mul
			}
		}
	}
	return -1
}
