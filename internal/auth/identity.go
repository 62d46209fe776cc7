package auth

import (
	"context"
	"fmt"
)

// Via says how a caller was authenticated.
type Via string

const (
	ViaNone  Via = "none"  // not authenticated
	ViaUnix  Via = "unix"  // peer credentials on the unix socket
	ViaCert  Via = "cert"  // a client certificate on the TLS listener
	ViaToken Via = "token" // a bearer token
)

// Identity is an authenticated caller.
type Identity struct {
	Via Via
	// Subject names the caller in audit lines: "uid=1000", a certificate's
	// matching SAN, or a token's subject.
	Subject string
	// SAN is, for certificate callers, the SAN that earned the role with
	// its type and raw bytes ("URI:spiffe://example.org/x"), for the
	// audit line.
	SAN  string
	Role Role
	// Key identifies the caller for rate limiting: the uid, the
	// certificate subject, or the token ID.
	Key string
	// TokenID is set for token callers.
	TokenID string
}

// Authenticated reports whether the caller proved who it is.
func (id Identity) Authenticated() bool { return id.Via != ViaNone && id.Via != "" }

// Error is an authentication or authorization failure: Code is 401 or 403.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unauthenticated is a 401.
func Unauthenticated(format string, args ...any) *Error {
	return &Error{Code: 401, Message: fmt.Sprintf(format, args...)}
}

// Forbidden is a 403.
func Forbidden(format string, args ...any) *Error {
	return &Error{Code: 403, Message: fmt.Sprintf(format, args...)}
}

// Authorize checks that id may use an endpoint that needs role need.
func Authorize(id Identity, need Role) *Error {
	if id.Role.Allows(need) {
		return nil
	}
	if !id.Authenticated() {
		return Unauthenticated("authentication required: this endpoint needs role %s (present a client certificate or a bearer token)", need)
	}
	why := ""
	if id.Role == None {
		why = " (no rule grants it a role)"
	}
	return Forbidden("forbidden: this endpoint needs role %s; %s %s has role %s%s", need, id.Via, id.Subject, id.Role, why)
}

type identityKey struct{}

// WithIdentity stores the caller's identity in ctx.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity WithIdentity stored, or an
// unauthenticated one.
func IdentityFrom(ctx context.Context) Identity {
	if id, ok := ctx.Value(identityKey{}).(Identity); ok {
		return id
	}
	return Identity{Via: ViaNone, Subject: "anonymous"}
}
