package auth

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"regexp"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// SANType names the kind of subject alternative name a rule matches.
type SANType string

const (
	// SANDNS matches dNSName SANs.
	SANDNS SANType = "dns"
	// SANURI matches uniformResourceIdentifier SANs, any URI.
	SANURI SANType = "uri"
	// SANSPIFFE matches URI SANs that are valid SPIFFE IDs (per the
	// SPIFFE ID specification: scheme spiffe, a lower-case trust domain,
	// no port, user info, query or fragment); a URI SAN that is not a
	// valid SPIFFE ID never matches it.
	SANSPIFFE SANType = "spiffe"
)

// SubjectRule grants a role to client certificates by one type of subject
// alternative name. Exactly one of Exact, Glob or Regex is set, and every
// kind matches the WHOLE name, compared with the SAN's bytes exactly as
// the certificate holds them (no case folding, no URI normalisation): a
// regex is anchored at both ends by leafd, whatever the pattern says.
type SubjectRule struct {
	// Type is the SAN type the rule matches: dns, uri or spiffe. Exact
	// and glob rules without it get the type their pattern shows
	// ("spiffe://…" → spiffe, another "scheme://…" → uri, else dns);
	// regex rules must name it.
	Type  SANType `json:"type,omitempty"`
	Exact string  `json:"exact,omitempty"`
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
	typ   SANType
	role  Role
	exact string
	re    *regexp.Regexp
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
	typ, err := ruleType(r)
	if err != nil {
		return compiledRule{}, err
	}
	c := compiledRule{typ: typ, role: r.Role}
	switch {
	case r.Exact != "":
		c.exact = r.Exact
		err = checkPattern(typ, r.Exact)
	case r.Glob != "":
		sep := "/"
		if typ == SANDNS {
			sep = "."
		}
		c.re = regexp.MustCompile(globRegex(r.Glob, sep))
		// A glob's wildcards stand for at least one valid character.
		err = checkPattern(typ, strings.NewReplacer("*", "x", "?", "x").Replace(r.Glob))
	default:
		c.re, err = regexp.Compile(`\A(?:` + r.Regex + `)\z`)
		if err != nil {
			err = fmt.Errorf("regex %q: %w", r.Regex, err)
		}
	}
	return c, err
}

// ruleType is the rule's SAN type, given or (for exact and glob)
// inferred from the pattern, so configurations written before rules had
// types keep their meaning for the names they were written for.
func ruleType(r SubjectRule) (SANType, error) {
	switch r.Type {
	case SANDNS, SANURI, SANSPIFFE:
		return r.Type, nil
	case "":
	default:
		return "", fmt.Errorf("type %q: want dns, uri or spiffe", r.Type)
	}
	if r.Regex != "" {
		return "", fmt.Errorf("regex %q: say which SAN type it matches with type: dns, uri or spiffe (leaf used to try a regex on DNS and URI SANs alike; a rule now matches one type)", r.Regex)
	}
	pattern := r.Exact + r.Glob
	switch {
	case strings.HasPrefix(pattern, "spiffe://"):
		return SANSPIFFE, nil
	case strings.Contains(pattern, "://"):
		return SANURI, nil
	}
	return SANDNS, nil
}

// checkPattern refuses a literal no SAN of the type could ever be.
func checkPattern(typ SANType, p string) error {
	switch typ {
	case SANDNS:
		if strings.ContainsAny(p, "/:@?#") {
			return fmt.Errorf("%q is not a DNS name (for a URI or SPIFFE ID set type: uri or spiffe)", p)
		}
	case SANSPIFFE:
		if err := validSPIFFEID(p); err != nil {
			return fmt.Errorf("%q: %w", p, err)
		}
	}
	return nil
}

// validSPIFFEID checks s against the SPIFFE ID specification, byte for
// byte: go-spiffe's parser refuses upper-case trust domains, ports, user
// info, queries, fragments, empty, "." and ".." segments and a trailing
// slash.
func validSPIFFEID(s string) error {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return fmt.Errorf("not a valid SPIFFE ID: %w", err)
	}
	if id.String() != s {
		return fmt.Errorf("not a valid SPIFFE ID: not in canonical form")
	}
	return nil
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

func (c compiledRule) match(san SAN) bool {
	switch c.typ {
	case SANDNS:
		if san.Type != SANDNS {
			return false
		}
	case SANURI:
		if san.Type != SANURI {
			return false
		}
	case SANSPIFFE:
		if san.Type != SANURI || validSPIFFEID(san.Raw) != nil {
			return false
		}
	}
	if c.re == nil {
		return san.Raw == c.exact
	}
	return c.re.MatchString(san.Raw)
}

// Identity returns the identity of a verified client certificate: the
// highest role any rule grants to any of its SANs, and the SAN that earned
// it. A certificate no rule matches gets role None and is named by its
// first SAN, so the 403 says which name was refused.
func (p *SubjectPolicy) Identity(cert *x509.Certificate) Identity {
	names := SANs(cert)
	id := Identity{Via: ViaCert, Subject: describeCert(cert, names)}
	if len(names) > 0 {
		id.SAN = names[0].String()
	}
	if len(p.rules) == 0 {
		id.Role = p.anyRole
	}
	for _, r := range p.rules {
		for _, n := range names {
			if r.match(n) && r.role > id.Role {
				id.Role, id.Subject, id.SAN = r.role, n.Raw, n.String()
			}
		}
	}
	id.Key = "cert:" + id.SAN
	if id.SAN == "" {
		id.Key = "cert:" + id.Subject
	}
	return id
}

// SAN is one DNS or URI subject alternative name, as the certificate holds
// it.
type SAN struct {
	// Type is SANDNS or SANURI.
	Type SANType
	// Raw is the name's bytes from the certificate, unparsed: what rules
	// compare and audit lines show.
	Raw string
}

// String is the SAN with its type, as openssl writes it: "DNS:a.example",
// "URI:spiffe://example.org/x".
func (s SAN) String() string {
	if s.Type == SANURI {
		return "URI:" + s.Raw
	}
	return "DNS:" + s.Raw
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// GeneralName tags (RFC 5280 4.2.1.6).
const (
	tagDNSName = 2
	tagURI     = 6
)

// SANs lists a certificate's DNS and URI SANs with their raw bytes, read
// from the extension itself: crypto/x509 parses URIs (and its String
// drops an empty fragment, lower-cases the scheme), which is not what
// the certificate says. The common name is ignored, as in every current
// TLS client: it is not a SAN.
func SANs(cert *x509.Certificate) []SAN {
	var out []SAN
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) != 0 || !seq.IsCompound || seq.Tag != asn1.TagSequence {
			return nil // crypto/x509 refuses such a certificate before us
		}
		for rest := seq.Bytes; len(rest) > 0; {
			var v asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &v); err != nil {
				return nil
			}
			if v.Class != asn1.ClassContextSpecific {
				continue
			}
			switch v.Tag {
			case tagDNSName:
				out = append(out, SAN{Type: SANDNS, Raw: string(v.Bytes)})
			case tagURI:
				out = append(out, SAN{Type: SANURI, Raw: string(v.Bytes)})
			}
		}
	}
	return out
}

// describeCert names a certificate for logs and answers.
func describeCert(cert *x509.Certificate, names []SAN) string {
	if len(names) > 0 {
		return names[0].Raw
	}
	return fmt.Sprintf("certificate without SAN (serial %s)", cert.SerialNumber)
}
