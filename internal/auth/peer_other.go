//go:build !linux

package auth

import (
	"fmt"
	"net"
	"runtime"
)

// PeerCredentials needs SO_PEERCRED, which leafd's platform has; the
// package builds elsewhere for the leaf CLI, which never serves a socket.
func PeerCredentials(net.Conn) (PeerCred, error) {
	return PeerCred{}, fmt.Errorf("peer credentials: not supported on %s", runtime.GOOS)
}
