// Package auth decides who a caller of leafd's API is and what it may do.
//
// A caller is identified by its transport: peer credentials (SO_PEERCRED)
// on the unix socket, a client certificate on the TLS listener, or a signed
// bearer token on either. The identity carries one role; every endpoint
// needs one role (see internal/server/routes.go), and roles are ordered so
// that a higher one includes the lower ones.
package auth

import (
	"fmt"
	"strings"
)

// Role is what a caller may do. Roles are ordered: Admin > Operator >
// Reader > None.
type Role int

const (
	// None is no role: an endpoint that needs None is open to everyone,
	// authenticated or not; a caller with None may use only those.
	None Role = iota
	// Reader may read: status, state, maps, packages, statistics.
	Reader
	// Operator may also dry-run changes and turn BPF statistics on or off:
	// things that never change what programs run.
	Operator
	// Admin may change what runs (apply, delete), and manage tokens and
	// the debug endpoints.
	Admin
)

var roleNames = []string{"none", "reader", "operator", "admin"}

func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return fmt.Sprintf("role(%d)", int(r))
	}
	return roleNames[r]
}

// Allows reports whether a caller with role r may use an endpoint that
// needs role need.
func (r Role) Allows(need Role) bool { return r >= need }

// ParseRole parses reader, operator or admin.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames {
		if i > 0 && strings.EqualFold(s, n) {
			return Role(i), nil
		}
	}
	return None, fmt.Errorf("role %q: want reader, operator or admin", s)
}

// MarshalText writes the role's name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads reader, operator or admin.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
