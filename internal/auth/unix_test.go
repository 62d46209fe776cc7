package auth

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestUnixPolicy(t *testing.T) {
	p, err := NewUnixPolicy([]UnixRule{
		{User: "1000", Role: Operator},
		{Group: "3001", Role: Reader},
		{Group: "3002", Role: Admin},
		{User: "1000", Role: Reader}, // lower than the rule above: the highest wins
	}, 4242)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		pc   PeerCred
		want Role
	}{
		{PeerCred{UID: 0, GID: 0}, Admin},
		{PeerCred{UID: 4242, GID: 4242}, Admin}, // leafd's own user
		{PeerCred{UID: 1000, GID: 1000}, Operator},
		{PeerCred{UID: 1001, GID: 3001}, Reader},                            // primary group
		{PeerCred{UID: 1001, GID: 1001, Groups: []uint32{5, 3001}}, Reader}, // supplementary group
		{PeerCred{UID: 1000, GID: 1000, Groups: []uint32{3002}}, Admin},
		{PeerCred{UID: 1002, GID: 1002, Groups: []uint32{5}}, None},
	}
	for _, c := range cases {
		id := p.Identity(c.pc)
		if id.Role != c.want || id.Via != ViaUnix || !strings.HasPrefix(id.Subject, "uid=") {
			t.Errorf("%+v: identity %+v, want role %s", c.pc, id, c.want)
		}
	}
}

func TestUnixPolicyErrors(t *testing.T) {
	for _, r := range []UnixRule{
		{User: "1", Group: "2", Role: Reader},
		{Role: Reader},
		{User: "1"},
		{User: "no-such-user-leaf-test", Role: Reader},
		{Group: "no-such-group-leaf-test", Role: Reader},
	} {
		if _, err := NewUnixPolicy([]UnixRule{r}, 0); err == nil || !strings.Contains(err.Error(), "socketRoles[0]") {
			t.Errorf("rule %+v: error %v, want one naming socketRoles[0]", r, err)
		}
	}
}

// TestPeerCredentials reads the kernel's record of a real connection.
func TestPeerCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pc, err := PeerCredentials(s)
	if err != nil {
		t.Fatal(err)
	}
	groups, _ := os.Getgroups()
	if pc.UID != uint32(os.Getuid()) || pc.GID != uint32(os.Getgid()) || pc.PID != uint32(os.Getpid()) {
		t.Errorf("peer %+v, want uid %d gid %d pid %d", pc, os.Getuid(), os.Getgid(), os.Getpid())
	}
	for _, g := range groups {
		if !slices.Contains(pc.Groups, uint32(g)) {
			t.Errorf("peer groups %v lack %d (ours: %v)", pc.Groups, g, groups)
		}
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tc, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := PeerCredentials(tc); err == nil {
		t.Error("peer credentials of a TCP connection: no error")
	}
}
