//go:build linux

package kernel

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// IgnoreTables makes the kernel drop, before they reach the socket, the
// route notifications of the tables named, with a classic BPF socket
// filter (SO_ATTACH_FILTER). A caller that leaves tables out of its model
// (Listener's WithIgnoreTables) still checks each message: notifications
// queued before the filter went on pass, and a kernel that refuses the
// filter (an error here) passes everything.
//
// Why in the kernel: the simulated ASIC mirrors every route it programs
// into a table of its own, so half of the notifications of a converging
// table are the mirror's; each was copied to the socket, received and
// decoded only to be dropped (half of the listener's 14% of gobgpd-ext's
// CPU at 120k), and took its share of the receive buffer an overrun
// depends on.
//
// Only route notifications are filtered, by their RTA_TABLE attribute,
// which the kernel puts in every one (rtm_table holds only tables below
// 256). The socket carries notifications only, one message a datagram;
// dumps use sockets of their own.
func (s *Subscription) IgnoreTables(ids ...uint32) error {
	if len(ids) == 0 {
		return nil
	}
	if len(ids) > maxFilteredTables {
		return fmt.Errorf("attach a filter for %d tables: at most %d", len(ids), maxFilteredTables)
	}
	prog := tableFilter(ids)
	var err error
	cerr := s.conn.Control(func(fd uintptr) {
		err = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("attach a filter for tables %v: %w", ids, err)
	}
	return nil
}

// maxFilteredTables keeps tableFilter's jumps within a byte.
const maxFilteredTables = 200

// tableFilter is the BPF program of IgnoreTables: accept anything but a
// route message whose RTA_TABLE is one of ids. BPF loads fields in
// network order, netlink writes them in the host's, so constants are
// what a big-endian load of the host's bytes reads.
func tableFilter(ids []uint32) []unix.SockFilter {
	asLoaded16 := func(v uint16) uint32 {
		var b [2]byte
		binary.NativeEndian.PutUint16(b[:], v)
		return uint32(binary.BigEndian.Uint16(b[:]))
	}
	asLoaded32 := func(v uint32) uint32 {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], v)
		return binary.BigEndian.Uint32(b[:])
	}
	const (
		typeOff  = 4                      // nlmsghdr.nlmsg_type
		attrsOff = nlmsgHdrLen + rtmsgLen // the first attribute of a route message
	)
	// An ancillary load (linux/filter.h SKF_AD_OFF + SKF_AD_NLATTR): A =
	// the offset of the first attribute of type X at or after offset A,
	// or 0.
	nlattr := int32(-0x1000 + 12)
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: jt, Jf: jf}
	}
	n := len(ids)
	// Jumps count instructions after the next one; accept is at
	// 9+n (after the table compares), drop at 10+n.
	prog := []unix.SockFilter{
		/* 0 */ stmt(unix.BPF_LD|unix.BPF_H|unix.BPF_ABS, typeOff),
		/* 1 */ jeq(asLoaded16(unix.RTM_NEWROUTE), 1, 0),
		/* 2 */ jeq(asLoaded16(unix.RTM_DELROUTE), 0, uint8(6+n)), // to accept
		/* 3 */ stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_IMM, attrsOff),
		/* 4 */ stmt(unix.BPF_LDX|unix.BPF_W|unix.BPF_IMM, unix.RTA_TABLE),
		/* 5 */ stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, uint32(nlattr)), // A = offset of RTA_TABLE, or 0
		/* 6 */ jeq(0, uint8(2+n), 0), // none: accept
		/* 7 */ stmt(unix.BPF_MISC|unix.BPF_TAX, 0),
		/* 8 */ stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_IND, 4), // the attribute's value, after its header
	}
	for i, id := range ids {
		prog = append(prog, jeq(asLoaded32(id), uint8(n-i), 0)) // to drop
	}
	return append(prog,
		stmt(unix.BPF_RET|unix.BPF_K, 0xffffffff), // accept: the whole datagram
		stmt(unix.BPF_RET|unix.BPF_K, 0),          // drop
	)
}
