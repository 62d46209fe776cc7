package auth

import (
	"context"
	"net"
)

// PeerCred is who connected to the unix socket, as the kernel recorded it
// at connect(2): it cannot be forged by the client.
type PeerCred struct {
	PID uint32
	UID uint32
	GID uint32
	// Groups are the supplementary groups (SO_PEERGROUPS), so membership
	// in a group grants its role even when it is not the primary group.
	Groups []uint32
}

type peerKey struct{}

// ConnContext is an http.Server ConnContext for the unix listener: it
// records the peer credentials of each connection once, at accept.
// A connection whose credentials cannot be read carries none and is
// treated as unauthenticated.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	pc, err := PeerCredentials(c)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, pc)
}

// PeerFrom returns the peer credentials ConnContext recorded.
func PeerFrom(ctx context.Context) (PeerCred, bool) {
	pc, ok := ctx.Value(peerKey{}).(PeerCred)
	return pc, ok
}
