//go:build linux

package netdevsim

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// The initramfs is written here, in Go, as a newc cpio archive (what the
// kernel unpacks into its root tmpfs; Documentation/driver-api/
// early-userspace/buffer-format.rst). Files are streamed from where they
// are on the host, so nothing is staged or copied twice, and the archive
// is left uncompressed: unpacking 150 MB of gzip under TCG takes longer
// than reading it.

// cpioWriter writes a newc archive.
type cpioWriter struct {
	w   *bufio.Writer
	ino uint32
	err error
}

func newCPIO(w io.Writer) *cpioWriter { return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20)} }

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
)

// header writes one entry's header and name, padded to 4 bytes.
func (c *cpioWriter) header(name string, mode uint32, size int64) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	_, c.err = io.WriteString(c.w, h+name+"\x00")
	c.pad(int64(len(h) + len(name) + 1))
}

func (c *cpioWriter) pad(n int64) {
	if c.err == nil && n%4 != 0 {
		_, c.err = c.w.Write(make([]byte, 4-n%4))
	}
}

// Dir adds a directory (its parents must be added first).
func (c *cpioWriter) Dir(name string) { c.header(name, modeDir|0o755, 0) }

// Symlink adds name pointing at target.
func (c *cpioWriter) Symlink(name, target string) {
	c.header(name, modeSymlink|0o777, int64(len(target)))
	if c.err == nil {
		_, c.err = io.WriteString(c.w, target)
	}
	c.pad(int64(len(target)))
}

// Bytes adds a file with the given content and permissions.
func (c *cpioWriter) Bytes(name string, perm uint32, b []byte) {
	c.header(name, modeFile|perm, int64(len(b)))
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
	c.pad(int64(len(b)))
}

// File adds the host file src (symlinks followed) as name, executable.
func (c *cpioWriter) File(name, src string) {
	if c.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.err = err
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.err = err
		return
	}
	c.header(name, modeFile|0o755, st.Size())
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, f)
	switch {
	case err != nil:
		c.err = fmt.Errorf("copy %s: %w", src, err)
	case n != st.Size():
		c.err = fmt.Errorf("copy %s: %d bytes, stat said %d", src, n, st.Size())
	}
	c.pad(n)
}

// Close writes the trailer and flushes.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}

// hostTools are the host's programs that go into the image: busybox
// (statically linked: busybox-static) for the shell and small tools, and
// iproute2's ip and devlink with the shared libraries they load.
type hostTools struct {
	busybox, ip, devlink string
	libs                 []string // absolute paths, kept as they are in the image
}

// findHostTools locates the tools or says which Debian package is missing.
func findHostTools() (hostTools, error) {
	var h hostTools
	look := func(name, pkg string) (string, error) {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
			if p := filepath.Join(d, name); isExecutable(p) {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s not found: install Debian's %s (make deps)", name, pkg)
	}
	var err error
	if h.busybox, err = look("busybox", "busybox-static"); err != nil {
		return h, err
	}
	if dynamic, err := isDynamic(h.busybox); err != nil {
		return h, err
	} else if dynamic {
		return h, fmt.Errorf("%s is dynamically linked: install Debian's busybox-static (make deps)", h.busybox)
	}
	if h.ip, err = look("ip", "iproute2"); err != nil {
		return h, err
	}
	if h.devlink, err = look("devlink", "iproute2"); err != nil {
		return h, err
	}
	for _, b := range []string{h.ip, h.devlink} {
		libs, err := sharedLibraries(b)
		if err != nil {
			return h, err
		}
		for _, l := range libs {
			if !slices.Contains(h.libs, l) {
				h.libs = append(h.libs, l)
			}
		}
	}
	return h, nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// isDynamic says whether an ELF file asks for a program interpreter.
func isDynamic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return true, nil
		}
	}
	return false, nil
}

// lddLine matches "libx.so.1 => /lib/.../libx.so.1 (0x...)" and the
// loader's "/lib64/ld-linux-x86-64.so.2 (0x...)".
var lddLine = regexp.MustCompile(`(?:=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)`)

// sharedLibraries lists the libraries ldd says bin loads, loader included.
func sharedLibraries(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	for _, l := range strings.Split(string(out), "\n") {
		if m := lddLine.FindStringSubmatch(l); m != nil {
			libs = append(libs, m[1])
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries in %q", bin, out)
	}
	return libs, nil
}

// writeInitramfs writes the image to dst: the tools, the Go binaries of
// binDir under /fg, and init as /init.
func writeInitramfs(dst string, h hostTools, binDir string, init string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	c := newCPIO(f)
	dirs := map[string]bool{}
	var mkdir func(d string)
	mkdir = func(d string) {
		if d == "/" || d == "." || dirs[d] {
			return
		}
		mkdir(path.Dir(d))
		dirs[d] = true
		c.Dir(strings.TrimPrefix(d, "/"))
	}
	for _, d := range []string{"/bin", "/sbin", "/proc", "/sys", "/dev", "/tmp", "/run/netns", "/etc", "/var", "/fg"} {
		mkdir(d)
	}
	// iproute2 keeps named namespaces under /var/run/netns.
	c.Symlink("var/run", "/run")
	c.File("bin/busybox", h.busybox)
	c.File("sbin/ip", h.ip)
	c.File("sbin/devlink", h.devlink)
	for _, l := range h.libs {
		mkdir(path.Dir(l))
		c.File(strings.TrimPrefix(l, "/"), l)
	}
	entries, err := os.ReadDir(binDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		c.File("fg/"+e.Name(), filepath.Join(binDir, e.Name()))
	}
	// localhost without a resolver: the daemons look it up.
	c.Bytes("etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n"))
	c.Bytes("init", 0o755, []byte(init))
	if err := c.Close(); err != nil {
		return fmt.Errorf("write initramfs %s: %w", dst, err)
	}
	return f.Close()
}
