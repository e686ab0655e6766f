package deploy_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// stage is a build stage: its FROM and what follows up to the next FROM.
type stage struct {
	image, name string
	ins         []instruction
}

func parseDockerfile(t *testing.T, name string) []stage {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []stage
	var cur strings.Builder
	start, n := 0, 0
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			st := stage{image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			t.Fatalf("%s:%d: %s before the first FROM", name, in.line, in.cmd)
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue // comments (the syntax directive included) and blank lines
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(l)
		flush()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return stages
}

// goVersion is go.mod's go line, as major.minor.
func goVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)(?:\.\d+)?\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

// TestDockerfile checks the image's build without Docker: three stages (build,
// lab with iproute2 for containerlab, final), the
// toolchain of go.mod's go line, a static, trimmed and stripped build of
// the five binaries, every one of them copied into a distroless (or
// scratch) final stage that has no RUN (it has no shell), runs as UID 0
// (see the Dockerfile's comment: capabilities added by the runtime reach
// UID 0 only), has an ENTRYPOINT that names no binary and a CMD whose
// flags the binary accepts.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, "Dockerfile")
	if len(stages) != 3 || stages[1].name != "lab" {
		t.Fatalf("%d stages, want 3 (build, lab, final)", len(stages))
	}
	build, labStage, final := stages[0], stages[1], stages[2]
	labCopied := map[string]bool{}
	for _, in := range labStage.ins {
		if in.cmd == "COPY" {
			for _, f := range strings.Fields(in.args) {
				labCopied[path.Base(f)] = true
			}
		}
		if in.cmd == "RUN" && !strings.Contains(in.args, "iproute2") {
			t.Errorf("line %d: the lab stage runs %q; it only needs iproute2", in.line, in.args)
		}
	}
	for _, b := range imported {
		if !labCopied[b.name] {
			t.Errorf("%s is not in the lab image", b.name)
		}
	}

	if want := "golang:" + goVersion(t); build.image != want && !strings.HasPrefix(build.image, want+"-") && !strings.HasPrefix(build.image, want+"@") {
		t.Errorf("builder image %s, want %s (go.mod's go line)", build.image, want)
	}
	if build.name == "" {
		t.Fatal("the build stage has no name (FROM ... AS build)")
	}
	var env, goBuild string
	for _, in := range build.ins {
		switch {
		case in.cmd == "ENV":
			env += " " + in.args
		case in.cmd == "RUN" && strings.Contains(in.args, "go build"):
			if goBuild != "" {
				t.Errorf("line %d: a second go build", in.line)
			}
			goBuild = in.args
		}
	}
	if !slices.Contains(strings.Fields(env), "CGO_ENABLED=0") {
		t.Errorf("build stage ENV %q: want CGO_ENABLED=0 (static binaries for distroless static)", env)
	}
	if goBuild == "" {
		t.Fatal("no RUN go build in the build stage")
	}
	_, cmdline, _ := strings.Cut(goBuild, "go build")
	for _, want := range []string{"-trimpath", `-ldflags "-s -w"`, "-o /out/"} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("go build %s: want %s", cmdline, want)
		}
	}
	var pkgs []string
	for f := range strings.FieldsSeq(strings.ReplaceAll(cmdline, `"-s -w"`, "")) {
		if strings.HasPrefix(f, "./") || strings.Contains(f, ".com/") {
			pkgs = append(pkgs, f)
		}
	}
	var want []string
	for _, b := range imported {
		want = append(want, b.pkg)
	}
	if !slices.Equal(pkgs, want) {
		t.Errorf("go build builds %v, want %v", pkgs, want)
	}

	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
		t.Errorf("final image %s: want gcr.io/distroless/static-* or scratch", final.image)
	}
	if strings.Contains(final.image, "nonroot") {
		t.Errorf("final image %s: the :nonroot variant runs as UID 65532, which gets no added capability", final.image)
	}
	copied := map[string]bool{}
	var user, entrypoint, cmd string
	var haveEntrypoint bool
	for _, in := range final.ins {
		switch in.cmd {
		case "RUN":
			t.Errorf("line %d: RUN in the final stage, which has no shell", in.line)
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) < 3 || f[0] != "--from="+build.name {
				t.Errorf("line %d: COPY %s: want COPY --from=%s ...", in.line, in.args, build.name)
				continue
			}
			dst := f[len(f)-1]
			for _, src := range f[1 : len(f)-1] {
				if !strings.HasPrefix(src, "/out/") || dst != "/usr/local/bin/" {
					t.Errorf("line %d: COPY %s to %s: want /out/NAME to /usr/local/bin/", in.line, src, dst)
				}
				copied[path.Base(src)] = true
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint, haveEntrypoint = in.args, true
		case "CMD":
			cmd = in.args
		}
	}
	for _, b := range imported {
		if !copied[b.name] {
			t.Errorf("%s is built but not copied into the final stage", b.name)
		}
	}
	if user != "0" && user != "0:0" && user != "root" {
		t.Errorf("USER %q: want 0:0 (see the comment in the Dockerfile)", user)
	}
	if !haveEntrypoint {
		t.Error("no ENTRYPOINT: say ENTRYPOINT [] so that the command names the binary")
	} else if entrypoint != "[]" {
		t.Errorf("ENTRYPOINT %s: want [] (users choose the binary)", entrypoint)
	}
	var argv []string
	if err := json.Unmarshal([]byte(cmd), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("CMD %s: want the exec (JSON) form: %v", cmd, err)
	}
	if dir, name := path.Split(argv[0]); dir != "/usr/local/bin/" || !copied[name] {
		t.Errorf("CMD runs %s, which is not in the image", argv[0])
	}
	checkCommand(t, argv)
}

// TestDockerignore checks the build context's allowlist
// (Dockerfile.dockerignore): every package of this module that the binaries
// import lies in a directory it lets in, and none embeds a file it leaves
// out.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	var excludedAll bool
	var excluded []string
	for l := range strings.SplitSeq(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case l == "*":
			excludedAll = true
		case strings.HasPrefix(l, "!"):
			if strings.ContainsAny(l[1:], "/*?") {
				t.Errorf("%q: the test understands top-level names only", l)
			}
			allowed[l[1:]] = true
		default:
			excluded = append(excluded, l)
		}
	}
	if !excludedAll {
		t.Fatal("Dockerfile.dockerignore does not start from * (an allowlist)")
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !allowed[f] {
			t.Errorf("%s is not in the build context", f)
		}
	}
	args := []string{"list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`}
	for _, b := range imported {
		if strings.HasPrefix(b.pkg, "./") {
			args = append(args, b.pkg)
		}
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	n := 0
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		rel, err := filepath.Rel(root(t), f[0])
		if err != nil {
			t.Fatal(err)
		}
		top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		if !allowed[top] {
			t.Errorf("package %s is imported by the binaries but %s/ is not in the build context", rel, top)
		}
		for _, e := range f[1:] {
			p := filepath.ToSlash(filepath.Join(rel, e))
			for _, x := range excluded {
				pat := strings.TrimPrefix(x, "**/")
				if ok, _ := path.Match(pat, path.Base(p)); ok || strings.Contains("/"+p+"/", "/"+pat+"/") {
					t.Errorf("%s embeds %s, which the ignore line %q leaves out", rel, p, x)
				}
			}
		}
		n++
	}
	if n < 5 {
		t.Errorf("go list found %d packages of the module: want the binaries and their dependencies", n)
	}
}
