// Package firewall parses, compiles and installs rule sets for the
// firewall package (packages/firewall): ordered allow/deny rules on source
// and destination prefixes, protocol and port ranges, and a default policy.
//
// A rule set is written into the generation the program does not use, then
// made current with one map write (see Install), so a packet sees the old
// rule set or the new one, never a mix, and the program is not reloaded.
package firewall

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Actions, as the program reads them.
const (
	Allow uint8 = 1
	Deny  uint8 = 2
)

// Limits on input, checked before anything is compiled.
const (
	// MaxLineLength bounds one line of a rules file.
	MaxLineLength = 1024
	// MaxRulesBytes bounds a whole rules file.
	MaxRulesBytes = 64 << 20
)

// Rule is one line of a rule set. A zero prefix (IsValid false) means any
// address; a rule whose prefixes are both any applies to both families
// unless its protocol is family-specific (icmp, icmpv6).
type Rule struct {
	Action   uint8
	Proto    uint8 // 0: any
	Src, Dst netip.Prefix
	// Port ranges, inclusive; set only with Proto TCP or UDP.
	Ports            bool
	SportLo, SportHi uint16
	DportLo, DportHi uint16
	// Line is where the rule was read (1-based), for messages.
	Line int
}

// RuleSet is an ordered list of rules and the action for packets no rule
// matches.
type RuleSet struct {
	Default uint8
	Rules   []Rule
}

var protocols = map[string]uint8{"any": 0, "icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}

// Family returns 4 or 6 when the rule applies to one family only, 0 when it
// applies to both.
func (r Rule) Family() uint8 {
	switch {
	case r.Src.IsValid() && r.Src.Addr().Is4(), r.Dst.IsValid() && r.Dst.Addr().Is4(), r.Proto == 1:
		return 4
	case r.Src.IsValid(), r.Dst.IsValid(), r.Proto == 58:
		return 6
	}
	return 0
}

// Parse reads a rule set: one rule per line, `#` starts a comment.
//
//	default deny
//	allow tcp from 10.0.0.0/8 to any dport 22
//	deny udp from 2001:db8::/32 dport 5000-5999
//	allow icmp
//
// A rule is an action (allow or deny), then optionally a protocol (any,
// tcp, udp, icmp, icmpv6, or `proto N`), `from PREFIX|ADDR|any`,
// `to PREFIX|ADDR|any`, `sport N[-M]`, `dport N[-M]`. The default policy
// is allow unless a `default` line says otherwise.
func Parse(r io.Reader) (*RuleSet, error) {
	rs := &RuleSet{Default: Allow}
	sc := bufio.NewScanner(io.LimitReader(r, MaxRulesBytes+1))
	sc.Buffer(make([]byte, 0, MaxLineLength), MaxLineLength)
	n, total, sawDefault := 0, 0, false
	for sc.Scan() {
		n++
		total += len(sc.Bytes()) + 1
		if total > MaxRulesBytes {
			return nil, fmt.Errorf("rules: more than %d bytes", MaxRulesBytes)
		}
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] == "default" {
			if sawDefault {
				return nil, fmt.Errorf("line %d: a second default policy", n)
			}
			if len(f) != 2 {
				return nil, fmt.Errorf("line %d: want `default allow` or `default deny`", n)
			}
			a, err := action(f[1])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			rs.Default, sawDefault = a, true
			continue
		}
		rule, err := parseRule(f)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		rule.Line = n
		rs.Rules = append(rs.Rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("rules: line %d: %w", n+1, err)
	}
	return rs, nil
}

// ParseString is Parse on a string.
func ParseString(s string) (*RuleSet, error) { return Parse(strings.NewReader(s)) }

func action(s string) (uint8, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	}
	return 0, fmt.Errorf("action %q: want allow or deny", s)
}

func parseRule(f []string) (Rule, error) {
	var r Rule
	var err error
	if r.Action, err = action(f[0]); err != nil {
		return r, err
	}
	seen := map[string]bool{}
	for i := 1; i < len(f); i++ {
		word := f[i]
		if p, ok := protocols[word]; ok && !seen["proto"] {
			r.Proto, seen["proto"] = p, true
			continue
		}
		if seen[word] {
			return r, fmt.Errorf("%s given twice", word)
		}
		seen[word] = true
		if i+1 >= len(f) {
			return r, fmt.Errorf("%s needs a value", word)
		}
		i++
		v := f[i]
		switch word {
		case "proto":
			n, err := strconv.ParseUint(v, 10, 8)
			if err != nil {
				return r, fmt.Errorf("proto %q: want a name or 0-255", v)
			}
			r.Proto = uint8(n)
		case "from":
			r.Src, err = prefix(v)
		case "to":
			r.Dst, err = prefix(v)
		case "sport":
			r.SportLo, r.SportHi, err = portRange(v)
			r.Ports = true
		case "dport":
			r.DportLo, r.DportHi, err = portRange(v)
			r.Ports = true
		default:
			return r, fmt.Errorf("unknown word %q (want a protocol, from, to, sport or dport)", word)
		}
		if err != nil {
			return r, err
		}
	}
	if r.Ports {
		if r.Proto != 6 && r.Proto != 17 {
			return r, fmt.Errorf("ports need tcp or udp")
		}
		if !seen["sport"] {
			r.SportLo, r.SportHi = 0, 65535
		}
		if !seen["dport"] {
			r.DportLo, r.DportHi = 0, 65535
		}
	}
	if r.Src.IsValid() && r.Dst.IsValid() && r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
		return r, fmt.Errorf("from %s and to %s are of different families", r.Src, r.Dst)
	}
	v4 := (r.Src.IsValid() && r.Src.Addr().Is4()) || (r.Dst.IsValid() && r.Dst.Addr().Is4())
	v6 := (r.Src.IsValid() && r.Src.Addr().Is6()) || (r.Dst.IsValid() && r.Dst.Addr().Is6())
	if (r.Proto == 1 && v6) || (r.Proto == 58 && v4) {
		return r, fmt.Errorf("icmp goes with IPv4 prefixes, icmpv6 with IPv6 ones")
	}
	return r, nil
}

func prefix(s string) (netip.Prefix, error) {
	if s == "any" {
		return netip.Prefix{}, nil
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("address %q: %w", s, err)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("prefix %q: %w", s, err)
	}
	if p.Addr().Is4In6() {
		return p, fmt.Errorf("prefix %q: IPv4-mapped IPv6; write the IPv4 prefix", s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("prefix %q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

func portRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	l, err1 := strconv.ParseUint(a, 10, 16)
	h := l
	var err2 error
	if isRange {
		h, err2 = strconv.ParseUint(b, 10, 16)
	}
	if err1 != nil || err2 != nil || h < l {
		return 0, 0, fmt.Errorf("port range %q: want N or N-M with 0 <= N <= M <= 65535", s)
	}
	return uint16(l), uint16(h), nil
}

// String writes the rule back in the syntax Parse reads.
func (r Rule) String() string {
	var b strings.Builder
	if r.Action == Deny {
		b.WriteString("deny")
	} else {
		b.WriteString("allow")
	}
	for name, p := range protocols {
		if p == r.Proto && p != 0 {
			b.WriteString(" " + name)
		}
	}
	if _, named := map[uint8]bool{0: true, 1: true, 6: true, 17: true, 58: true}[r.Proto]; !named {
		fmt.Fprintf(&b, " proto %d", r.Proto)
	}
	if r.Src.IsValid() {
		b.WriteString(" from " + r.Src.String())
	}
	if r.Dst.IsValid() {
		b.WriteString(" to " + r.Dst.String())
	}
	if r.Ports && (r.SportLo != 0 || r.SportHi != 65535) {
		fmt.Fprintf(&b, " sport %d-%d", r.SportLo, r.SportHi)
	}
	if r.Ports && (r.DportLo != 0 || r.DportHi != 65535) {
		fmt.Fprintf(&b, " dport %d-%d", r.DportLo, r.DportHi)
	}
	return b.String()
}
