package firewall

import (
	"fmt"
	"net/netip"
	"sort"
)

// bpfRule mirrors struct rule in firewall.bpf.c; TestLayoutMatchesObject
// checks it against the object's BTF.
type bpfRule struct {
	Action           uint8
	Proto            uint8
	Family           uint8
	Ports            uint8
	SportLo, SportHi uint16
	DportLo, DportHi uint16
	Src, Smask       [4]uint32
	Dst, Dmask       [4]uint32
}

// bpfClass mirrors struct class: a slice of the generation's class lists.
type bpfClass struct {
	First, Count uint32
}

// bpfConfig mirrors struct config.
type bpfConfig struct {
	DefaultAction uint32
	NRules        uint32
}

// class is one distinct prefix of one side (source or destination) of one
// family, with the rules (in order) whose prefix on that side contains it.
type class struct {
	prefix netip.Prefix
	rules  []uint32
}

// compiled is a rule set in the program's layout, for one generation.
type compiled struct {
	def   uint8
	rules []bpfRule
	cands []uint32
	// tries maps "src4", "dst4", "src6", "dst6" to entries.
	tries map[string][]trieEntry
}

type trieEntry struct {
	prefix netip.Prefix
	class  bpfClass
}

// Limits of one generation, read from the maps' sizes.
type limits struct {
	rules, cands int
}

func compile(rs *RuleSet, lim limits) (*compiled, error) {
	if len(rs.Rules) > lim.rules {
		return nil, fmt.Errorf("%d rules, at most %d fit", len(rs.Rules), lim.rules)
	}
	c := &compiled{def: rs.Default, tries: map[string][]trieEntry{}}
	for _, r := range rs.Rules {
		c.rules = append(c.rules, encodeRule(r))
	}
	for _, fam := range []uint8{4, 6} {
		for _, side := range []string{"src", "dst"} {
			classes := classify(rs.Rules, fam, side == "src")
			name := fmt.Sprintf("%s%d", side, fam)
			for _, cl := range classes {
				if len(c.cands)+len(cl.rules) > lim.cands {
					return nil, fmt.Errorf("the rule set needs more than %d class-list entries: "+
						"rules whose %s prefix is wide (any, short prefixes) repeat in the list of every narrower %s prefix; "+
						"put fewer wide rules among many narrow ones", lim.cands, side, side)
				}
				c.tries[name] = append(c.tries[name], trieEntry{
					prefix: cl.prefix,
					class:  bpfClass{First: uint32(len(c.cands)), Count: uint32(len(cl.rules))},
				})
				c.cands = append(c.cands, cl.rules...)
			}
		}
	}
	return c, nil
}

func side(r Rule, src bool) netip.Prefix {
	if src {
		return r.Src
	}
	return r.Dst
}

// classify returns the classes of one side of one family: every distinct
// prefix of the rules that apply to the family, and the whole address space.
// A packet's address falls in the longest class prefix containing it, and
// that class lists exactly the rules whose prefix contains the address.
func classify(rules []Rule, fam uint8, src bool) []class {
	bits := 32
	zero := netip.IPv4Unspecified()
	if fam == 6 {
		bits, zero = 128, netip.IPv6Unspecified()
	}
	root := netip.PrefixFrom(zero, 0)
	seen := map[netip.Prefix]bool{root: true}
	prefixes := []netip.Prefix{root}
	applies := func(r Rule) bool { f := r.Family(); return f == 0 || f == fam }
	for _, r := range rules {
		if p := side(r, src); applies(r) && p.IsValid() && !seen[p] {
			seen[p] = true
			prefixes = append(prefixes, p)
		}
	}
	// Sorted by first address, then shorter first: the classes inside a
	// prefix are a run starting at the prefix's own position.
	sort.Slice(prefixes, func(i, j int) bool {
		if c := prefixes[i].Addr().Compare(prefixes[j].Addr()); c != 0 {
			return c < 0
		}
		return prefixes[i].Bits() < prefixes[j].Bits()
	})
	classes := make([]class, len(prefixes))
	for i, p := range prefixes {
		classes[i].prefix = p
	}
	for idx, r := range rules {
		if !applies(r) {
			continue
		}
		p := side(r, src)
		if !p.IsValid() {
			p = root
		}
		last := lastAddr(p, bits)
		start := sort.Search(len(prefixes), func(i int) bool { return prefixes[i].Addr().Compare(p.Addr()) >= 0 })
		for i := start; i < len(prefixes) && prefixes[i].Addr().Compare(last) <= 0; i++ {
			if prefixes[i].Bits() >= p.Bits() {
				classes[i].rules = append(classes[i].rules, uint32(idx))
			}
		}
	}
	return classes
}

func lastAddr(p netip.Prefix, bits int) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < bits; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// words returns the prefix's address and mask as the program compares
// them: 32-bit words holding network-order bytes.
func words(p netip.Prefix) (addr, mask [4]uint32) {
	if !p.IsValid() {
		return
	}
	b := p.Addr().AsSlice()
	m := make([]byte, len(b))
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	for i := 0; i < len(b)/4; i++ {
		addr[i] = nativeWord(b[i*4:])
		mask[i] = nativeWord(m[i*4:])
	}
	return
}

func encodeRule(r Rule) bpfRule {
	br := bpfRule{Action: r.Action, Proto: r.Proto, Family: r.Family(),
		SportLo: r.SportLo, SportHi: r.SportHi, DportLo: r.DportLo, DportHi: r.DportHi}
	if r.Ports {
		br.Ports = 1
	}
	br.Src, br.Smask = words(r.Src)
	br.Dst, br.Dmask = words(r.Dst)
	return br
}

// key4 and key6 mirror the LPM keys: prefixlen (32 for the generation +
// the prefix's bits), the generation, the address bytes.
type key4 struct {
	Prefixlen, Gen uint32
	Addr           [4]byte
}

type key6 struct {
	Prefixlen, Gen uint32
	Addr           [16]byte
}
