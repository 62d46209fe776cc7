package auth

import (
	"fmt"
	"os/user"
	"strconv"
)

// UnixRule grants a role to callers on the unix socket by user or group.
// Exactly one of User or Group is set: a name or a numeric ID.
type UnixRule struct {
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	Role  Role   `json:"role"`
}

// UnixPolicy maps peer credentials to roles. The caller's role is the
// highest role any matching rule grants, so the order of rules does not
// matter.
type UnixPolicy struct {
	uids map[uint32]Role
	gids map[uint32]Role
}

// NewUnixPolicy resolves user and group names to IDs. Root and alwaysAdmin
// (leafd's own uid) are always admins: they can read leafd's key and state
// anyway, and an operator must never lock them out by a rule list.
func NewUnixPolicy(rules []UnixRule, alwaysAdmin uint32) (*UnixPolicy, error) {
	p := &UnixPolicy{uids: map[uint32]Role{0: Admin, alwaysAdmin: Admin}, gids: map[uint32]Role{}}
	for i, r := range rules {
		if r.Role == None {
			return nil, fmt.Errorf("socketRoles[%d]: role is required (reader, operator or admin)", i)
		}
		switch {
		case r.User != "" && r.Group != "":
			return nil, fmt.Errorf("socketRoles[%d]: set user or group, not both", i)
		case r.User != "":
			uid, err := LookupUID(r.User)
			if err != nil {
				return nil, fmt.Errorf("socketRoles[%d]: %w", i, err)
			}
			p.uids[uid] = max(p.uids[uid], r.Role)
		case r.Group != "":
			gid, err := LookupGID(r.Group)
			if err != nil {
				return nil, fmt.Errorf("socketRoles[%d]: %w", i, err)
			}
			p.gids[gid] = max(p.gids[gid], r.Role)
		default:
			return nil, fmt.Errorf("socketRoles[%d]: set user or group", i)
		}
	}
	return p, nil
}

// Identity returns the identity of a socket caller.
func (p *UnixPolicy) Identity(pc PeerCred) Identity {
	role := p.uids[pc.UID]
	role = max(role, p.gids[pc.GID])
	for _, g := range pc.Groups {
		role = max(role, p.gids[g])
	}
	uid := strconv.FormatUint(uint64(pc.UID), 10)
	return Identity{Via: ViaUnix, Subject: "uid=" + uid, Role: role, Key: "uid:" + uid}
}

// LookupUID resolves a user name or numeric uid.
func LookupUID(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("user %q: %w", s, err)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err
}

// LookupGID resolves a group name or numeric gid.
func LookupGID(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", s, err)
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(n), err
}
