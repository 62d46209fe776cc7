package auth

import (
	"strings"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/testenv/pki"
)

func TestSubjectRules(t *testing.T) {
	ca := pki.NewCA(t, "test CA")
	p, err := NewSubjectPolicy([]SubjectRule{
		{Exact: "ops.leaf.test", Role: Operator},
		{Glob: "*.readers.leaf.test", Role: Reader},
		{Glob: "spiffe://leaf.test/ns/*/sa/admin", Role: Admin},
		{Type: SANDNS, Regex: `reader-[0-9]+\.leaf\.test`, Role: Reader},
		{Type: SANDNS, Regex: `never`, Role: Operator},
		{Type: SANSPIFFE, Regex: `spiffe://leaf\.test/ops/.*`, Role: Operator},
	}, Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		dns, uri []string
		want     Role
		subject  string
	}{
		{"exact DNS", []string{"ops.leaf.test"}, nil, Operator, "ops.leaf.test"},
		{"exact is whole name", []string{"xops.leaf.test"}, nil, None, "xops.leaf.test"},
		{"exact, suffix", []string{"ops.leaf.test.evil.com"}, nil, None, "ops.leaf.test.evil.com"},
		{"glob one label", []string{"a.readers.leaf.test"}, nil, Reader, "a.readers.leaf.test"},
		{"glob does not cross a dot", []string{"a.b.readers.leaf.test"}, nil, None, "a.b.readers.leaf.test"},
		{"glob SPIFFE segment", nil, []string{"spiffe://leaf.test/ns/prod/sa/admin"}, Admin, "spiffe://leaf.test/ns/prod/sa/admin"},
		{"glob does not cross a slash", nil, []string{"spiffe://leaf.test/ns/a/b/sa/admin"}, None, "spiffe://leaf.test/ns/a/b/sa/admin"},
		{"regex anchored", []string{"reader-12.leaf.test"}, nil, Reader, "reader-12.leaf.test"},
		// Matches the regex only if it were unanchored (l3afd's mistake).
		{"regex only unanchored: suffix", []string{"reader-1.leaf.test.evil.com"}, nil, None, "reader-1.leaf.test.evil.com"},
		{"regex only unanchored: prefix", []string{"evil-reader-1.leaf.test"}, nil, None, "evil-reader-1.leaf.test"},
		// An alternation must not escape the anchors: ^a|b$ would match "never-ending".
		{"regex alternation stays anchored", []string{"never-ending"}, nil, None, "never-ending"},
		{"highest role of all SANs", []string{"a.readers.leaf.test", "ops.leaf.test"}, nil, Operator, "ops.leaf.test"},
		{"DNS rule vs URI SAN", nil, []string{"ops.leaf.test"}, None, "ops.leaf.test"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			leaf := ca.Issue(t, pki.Options{DNS: c.dns, URIs: c.uri})
			id := p.Identity(leaf.Cert)
			if id.Role != c.want || id.Subject != c.subject || id.Via != ViaCert {
				t.Errorf("identity %+v, want role %s subject %s", id, c.want, c.subject)
			}
		})
	}
}

func TestSubjectRulesEmptyAcceptsAnyCert(t *testing.T) {
	ca := pki.NewCA(t, "test CA")
	p, err := NewSubjectPolicy(nil, Operator)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Identity(ca.Issue(t, pki.Options{DNS: []string{"anything.example"}}).Cert)
	if id.Role != Operator || id.Subject != "anything.example" {
		t.Errorf("identity %+v, want operator anything.example", id)
	}
	// A certificate without SANs is still named.
	id = p.Identity(ca.Issue(t, pki.Options{CN: "cn-only"}).Cert)
	if id.Role != Operator || !strings.Contains(id.Subject, "without SAN") {
		t.Errorf("identity %+v", id)
	}
	if _, err := NewSubjectPolicy(nil, None); err == nil {
		t.Error("no rules and no role: accepted")
	}
}

func TestSubjectRuleErrors(t *testing.T) {
	for _, c := range []struct {
		rule SubjectRule
		want string
	}{
		{SubjectRule{Role: Reader}, "exactly one"},
		{SubjectRule{Exact: "a", Glob: "b", Role: Reader}, "exactly one"},
		{SubjectRule{Exact: "a"}, "role is required"},
		{SubjectRule{Type: SANDNS, Regex: "(", Role: Reader}, "regex"},
		// Old configurations: a regex says which SAN type it matches.
		{SubjectRule{Regex: "a.*", Role: Reader}, "type: dns, uri or spiffe"},
		{SubjectRule{Type: "ip", Exact: "a", Role: Reader}, `type "ip"`},
		{SubjectRule{Type: SANDNS, Exact: "spiffe://prod/x", Role: Reader}, "not a DNS name"},
		// SPIFFE rules must be valid SPIFFE IDs themselves.
		{SubjectRule{Exact: "spiffe://prod/leaf-admin#", Role: Admin}, "not a valid SPIFFE ID"},
		{SubjectRule{Exact: "spiffe://PROD/leaf-admin", Role: Admin}, "not a valid SPIFFE ID"},
		{SubjectRule{Exact: "spiffe://prod:443/leaf-admin", Role: Admin}, "not a valid SPIFFE ID"},
		{SubjectRule{Exact: "spiffe://ops@prod/leaf-admin", Role: Admin}, "not a valid SPIFFE ID"},
		{SubjectRule{Exact: "spiffe://prod/leaf-admin?x", Role: Admin}, "not a valid SPIFFE ID"},
		{SubjectRule{Exact: "spiffe://prod/a/../leaf-admin", Role: Admin}, "not a valid SPIFFE ID"},
		{SubjectRule{Type: SANSPIFFE, Glob: "spiffe://Prod/*", Role: Admin}, "not a valid SPIFFE ID"},
	} {
		_, err := NewSubjectPolicy([]SubjectRule{c.rule}, Reader)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "subjects[0]") {
			t.Errorf("rule %+v: error %v, want one naming subjects[0] and %q", c.rule, err, c.want)
		}
	}
}

func TestRoles(t *testing.T) {
	for _, s := range []string{"reader", "operator", "admin", "ADMIN"} {
		if _, err := ParseRole(s); err != nil {
			t.Errorf("ParseRole(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "none", "root", "admin "} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) accepted", s)
		}
	}
	if !Admin.Allows(Operator) || !Operator.Allows(Reader) || Reader.Allows(Operator) || None.Allows(Reader) || !None.Allows(None) {
		t.Error("role order is wrong")
	}
	if err := Authorize(Identity{Via: ViaNone}, Reader); err == nil || err.Code != 401 {
		t.Errorf("anonymous: %v, want 401", err)
	}
	err := Authorize(Identity{Via: ViaUnix, Subject: "uid=7", Role: Reader}, Admin)
	if err == nil || err.Code != 403 || !strings.Contains(err.Message, "needs role admin") || !strings.Contains(err.Message, "uid=7 has role reader") {
		t.Errorf("reader on admin endpoint: %v, want 403 naming admin and the caller", err)
	}
}

// TestSubjectRulesBySANType is the table of issue 10: certificates whose
// SANs differ from a rule's name by type, case, a fragment, a query or
// user info get nothing from it; the SAN's bytes are compared as the
// certificate holds them.
func TestSubjectRulesBySANType(t *testing.T) {
	ca := pki.NewCA(t, "test CA")
	p, err := NewSubjectPolicy([]SubjectRule{
		{Exact: "spiffe://prod/leaf-admin", Role: Admin}, // type inferred: spiffe
		{Glob: "spiffe://prod/team/*", Role: Reader},     // spiffe
		{Type: SANURI, Exact: "https://ops.example/leaf", Role: Operator},
		{Exact: "ops.example", Role: Reader}, // dns
		{Type: SANDNS, Regex: `node-[0-9]+\.example`, Role: Reader},
	}, None)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		san  string
		want Role
	}{
		{"URI:spiffe://prod/leaf-admin", Admin},
		{"URI:spiffe://prod/leaf-admin#", None},
		{"URI:spiffe://prod/leaf-admin#frag", None},
		{"URI:SPIFFE://prod/leaf-admin", None},
		{"URI:spiffe://PROD/leaf-admin", None},
		{"URI:spiffe://prod/Leaf-Admin", None},
		{"URI:spiffe://prod/leaf-admin?x=1", None},
		{"URI:spiffe://prod/leaf-admin/", None},
		{"URI:spiffe://ops@prod/leaf-admin", None},
		{"DNS:spiffe://prod/leaf-admin", None},
		{"URI:spiffe://prod/team/a", Reader},
		{"URI:spiffe://prod/team/a#", None},
		{"URI:spiffe://prod/team/a/b", None},
		{"URI:https://ops.example/leaf", Operator},
		{"URI:HTTPS://ops.example/leaf", None},
		{"URI:https://ops.example/leaf#", None},
		{"DNS:ops.example", Reader},
		{"DNS:OPS.example", None},
		{"URI:ops.example", None},
		{"DNS:node-7.example", Reader},
		{"URI:node-7.example", None},
	} {
		t.Run(c.san, func(t *testing.T) {
			cert := ca.Issue(t, pki.Options{CN: "x", RawSANs: []string{c.san}}).Cert
			id := p.Identity(cert)
			if id.Role != c.want {
				t.Errorf("role %s, want %s", id.Role, c.want)
			}
			// The audit line shows the SAN raw, with its type.
			if id.SAN != c.san {
				t.Errorf("identity SAN %q, want the raw %q", id.SAN, c.san)
			}
		})
	}
}
