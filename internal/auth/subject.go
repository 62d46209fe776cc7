package auth

import (
	"crypto/x509"
	"fmt"
	"regexp"
	"strings"
)

// SubjectRule grants a role to client certificates by subject alternative
// name: a DNS name or a URI (SPIFFE IDs are URIs). Exactly one of Exact,
// Glob or Regex is set, and every kind matches the WHOLE name: a regex is
// anchored at both ends by leafd, whatever the pattern says.
type SubjectRule struct {
	Exact string `json:"exact,omitempty"`
	// Glob: * matches any run of characters within one DNS label or URI
	// path segment (never a "." in a DNS name, never a "/" in a URI); ?
	// matches one such character. Everything else is literal.
	Glob  string `json:"glob,omitempty"`
	Regex string `json:"regex,omitempty"`
	Role  Role   `json:"role"`
}

// SubjectPolicy maps certificate SANs to roles.
type SubjectPolicy struct {
	rules []compiledRule
	// anyRole is the role of every certificate from the CA when there are
	// no rules.
	anyRole Role
}

type compiledRule struct {
	desc     string
	role     Role
	exact    string
	dns, uri *regexp.Regexp
}

// NewSubjectPolicy compiles rules. With no rules every certificate that
// chains to the CA gets anyRole.
func NewSubjectPolicy(rules []SubjectRule, anyRole Role) (*SubjectPolicy, error) {
	p := &SubjectPolicy{anyRole: anyRole}
	if len(rules) == 0 && anyRole == None {
		return nil, fmt.Errorf("no subject rules: set a role for any certificate from the CA (defaultRole)")
	}
	for i, r := range rules {
		c, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("subjects[%d]: %w", i, err)
		}
		p.rules = append(p.rules, c)
	}
	return p, nil
}

func compileRule(r SubjectRule) (compiledRule, error) {
	if r.Role == None {
		return compiledRule{}, fmt.Errorf("role is required (reader, operator or admin)")
	}
	set := 0
	for _, s := range []string{r.Exact, r.Glob, r.Regex} {
		if s != "" {
			set++
		}
	}
	if set != 1 {
		return compiledRule{}, fmt.Errorf("set exactly one of exact, glob, regex")
	}
	c := compiledRule{role: r.Role}
	switch {
	case r.Exact != "":
		c.exact, c.desc = r.Exact, "exact "+r.Exact
	case r.Glob != "":
		c.desc = "glob " + r.Glob
		c.dns = regexp.MustCompile(globRegex(r.Glob, "."))
		c.uri = regexp.MustCompile(globRegex(r.Glob, "/"))
	default:
		re, err := regexp.Compile(`\A(?:` + r.Regex + `)\z`)
		if err != nil {
			return compiledRule{}, fmt.Errorf("regex %q: %w", r.Regex, err)
		}
		c.desc, c.dns, c.uri = "regex "+r.Regex, re, re
	}
	return c, nil
}

// globRegex turns a glob into an anchored regex in which wildcards do not
// cross sep.
func globRegex(glob, sep string) string {
	var b strings.Builder
	b.WriteString(`\A`)
	notSep := `[^` + regexp.QuoteMeta(sep) + `]`
	for _, ch := range glob {
		switch ch {
		case '*':
			b.WriteString(notSep + `*`)
		case '?':
			b.WriteString(notSep)
		default:
			b.WriteString(regexp.QuoteMeta(string(ch)))
		}
	}
	b.WriteString(`\z`)
	return b.String()
}

func (c compiledRule) match(name string, isURI bool) bool {
	if c.exact != "" {
		return name == c.exact
	}
	if isURI {
		return c.uri.MatchString(name)
	}
	return c.dns.MatchString(name)
}

// Identity returns the identity of a verified client certificate: the
// highest role any rule grants to any of its SANs, and the SAN that earned
// it. A certificate no rule matches gets role None and is named by its
// first SAN, so the 403 says which name was refused.
func (p *SubjectPolicy) Identity(cert *x509.Certificate) Identity {
	names := SANs(cert)
	id := Identity{Via: ViaCert, Subject: describeCert(cert, names)}
	id.Key = "cert:" + id.Subject
	if len(p.rules) == 0 {
		id.Role = p.anyRole
		return id
	}
	for _, r := range p.rules {
		for _, n := range names {
			if r.match(n.Name, n.URI) && r.role > id.Role {
				id.Role, id.Subject = r.role, n.Name
			}
		}
	}
	id.Key = "cert:" + id.Subject
	return id
}

// SAN is one subject alternative name.
type SAN struct {
	Name string
	URI  bool
}

// SANs lists a certificate's DNS and URI SANs. The common name is ignored,
// as in every current TLS client: it is not a SAN.
func SANs(cert *x509.Certificate) []SAN {
	var out []SAN
	for _, d := range cert.DNSNames {
		out = append(out, SAN{Name: d})
	}
	for _, u := range cert.URIs {
		out = append(out, SAN{Name: u.String(), URI: true})
	}
	return out
}

// describeCert names a certificate for logs and answers.
func describeCert(cert *x509.Certificate, names []SAN) string {
	if len(names) > 0 {
		return names[0].Name
	}
	return fmt.Sprintf("certificate without SAN (serial %s)", cert.SerialNumber)
}
