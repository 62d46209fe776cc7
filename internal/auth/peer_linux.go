package auth

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PeerCredentials reads the peer credentials of a unix socket connection.
func PeerCredentials(c net.Conn) (PeerCred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return PeerCred{}, fmt.Errorf("peer credentials: %T is not a unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return PeerCred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var pc PeerCred
	var sockErr error
	err = raw.Control(func(fd uintptr) {
		var cred *unix.Ucred
		cred, sockErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if sockErr != nil {
			return
		}
		pc = PeerCred{PID: uint32(cred.Pid), UID: cred.Uid, GID: cred.Gid}
		pc.Groups, sockErr = peerGroups(int(fd))
	})
	if err == nil {
		err = sockErr
	}
	if err != nil {
		return PeerCred{}, fmt.Errorf("peer credentials: %w", err)
	}
	return pc, nil
}

// peerGroups reads SO_PEERGROUPS (Linux 4.13+). x/sys/unix has no typed
// helper for it, so call getsockopt directly, growing the buffer on
// ERANGE as the kernel asks.
func peerGroups(fd int) ([]uint32, error) {
	n := 64
	for {
		buf := make([]uint32, n)
		size := uint32(n * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == 0:
			return buf[:size/4], nil
		case errors.Is(errno, unix.ERANGE) && int(size/4) > n:
			n = int(size / 4)
		case errors.Is(errno, unix.ENOPROTOOPT):
			return nil, nil // older kernel: primary group only
		default:
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
	}
}
