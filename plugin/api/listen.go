package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// socketMode is the unix socket's permission: the API changes what the
// router advertises, so only its owner (root, or the daemon's user) may
// connect. Group access is a matter for the directory.
const socketMode = 0o600

// listenUnix prepares and opens the unix socket: the directory must exist
// (the daemon does not invent /run layouts; systemd's RuntimeDirectory=
// makes it), a stale socket left by a crashed daemon is removed, a live one
// is not, and anything that is not a socket is never touched. The socket is
// created with mode 0600 from the start (fchmod before bind), so there is
// no moment at which others may connect.
func listenUnix(ctx context.Context, path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("api: socket directory %s does not exist: create it (e.g. systemd RuntimeDirectory=) or choose another socket path", dir)
	case err != nil:
		return nil, fmt.Errorf("api: socket directory: %w", err)
	case !st.IsDir():
		return nil, fmt.Errorf("api: %s is not a directory, so the socket %s cannot be created there", dir, path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("api: %s exists and is not a socket; not removing it", path)
		}
		d := net.Dialer{Timeout: time.Second}
		if c, err := d.DialContext(ctx, "unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("api: another server is listening on %s", path)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("api: check existing socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api: remove stale socket: %w", err)
		}
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var ferr error
		if err := c.Control(func(fd uintptr) { ferr = unix.Fchmod(int(fd), socketMode) }); err != nil {
			return err
		}
		return ferr
	}}
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", path, err)
	}
	// Belt and braces: a kernel that ignored the fchmod still ends with
	// the right mode.
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: set mode of %s: %w", path, err)
	}
	return ln, nil
}

// ServerTLS builds the TLS configuration for WithTCP from PEM files: the
// server's certificate and key, and, when clientCAFile is not empty, the CA
// that client certificates must chain to (mutual TLS: no certificate, no
// connection).
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("api: load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pool, err := LoadCertPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// LoadCertPool reads PEM certificates into a pool, for a CA file given on
// a command line.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("api: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("api: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
