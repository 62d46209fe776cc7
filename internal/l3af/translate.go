package l3af

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// Annotation holds the applied L3AF configuration in leaf's desired
// state: GET answers from it, and leafd reads its package hints from it
// at start.
const Annotation = "l3af.leaf.dev/configs"

// Roots are l3afd's chain root programs; leaf chains without them.
var Roots = map[string]bool{"xdp_root": true, "tc_root": true, "xdp-root": true, "tc-root": true}

// Config is the whole L3AF configuration of the host: one entry per
// interface.
type Config []HostConfig

// entry is one program in its place.
type entry struct {
	iface, hook string
	prog        *Program
}

func (c Config) entries() []entry {
	var out []entry
	for i := range c {
		if c[i].BPFPrograms == nil {
			continue
		}
		for _, l := range c[i].BPFPrograms.lists() {
			for _, p := range *l.progs {
				out = append(out, entry{iface: c[i].Iface, hook: l.hook, prog: p})
			}
		}
	}
	return out
}

// sorted orders interfaces by name and each hook's programs by seq_id,
// as GET lists them.
func (c Config) sorted() Config {
	sort.Slice(c, func(i, j int) bool { return c[i].Iface < c[j].Iface })
	for i := range c {
		if c[i].BPFPrograms == nil {
			continue
		}
		for _, l := range c[i].BPFPrograms.lists() {
			ps := *l.progs
			sort.SliceStable(ps, func(a, b int) bool { return ps[a].SeqID < ps[b].SeqID })
		}
	}
	return c
}

// configOf reads the L3AF configuration kept in st.
func configOf(st *desired.State) (Config, error) {
	raw := st.Metadata.Annotations[Annotation]
	if raw == "" {
		return nil, nil
	}
	var c Config
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", Annotation, err)
	}
	return c, nil
}

func (c Config) encode() string {
	if len(c) == 0 {
		return ""
	}
	data, _ := json.Marshal(c) // plain data: always marshals
	return string(data)
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	semverRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)
	labelRE  = regexp.MustCompile(`^[0-9A-Za-z.-]{1,40}$`)
)

// PackageName is the leaf package name of an L3AF program name: lower
// case, '_' and '.' as '-'.
func PackageName(name string) (string, error) {
	n := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
	if !nameRE.MatchString(n) {
		return "", fmt.Errorf("%q cannot be a package name (letters, digits, '-', '_', at most 63)", name)
	}
	return n, nil
}

// PackageVersion is the leaf version of an L3AF version: a semantic
// version stays, anything else (l3afd's "latest") becomes the
// pre-release 0.0.0-<version>. The KFaaS path keeps l3afd's version.
func PackageVersion(v string) (string, error) {
	v = strings.TrimPrefix(v, "v")
	switch {
	case semverRE.MatchString(v):
		return v, nil
	case labelRE.MatchString(v):
		return "0.0.0-" + v, nil
	}
	return "", fmt.Errorf("%q is not a version leaf can name (letters, digits, '.', '-')", v)
}

// hookShort names a hook in attachment names.
var hookShort = map[string]string{HookXDPIngress: "xdp", HookTCIngress: "tci", HookTCEgress: "tce", HookProbes: "probe"}

// AttachmentName is the leaf attachment of an L3AF program:
// l3af-<iface>-<hook>-<name>, shortened with a hash when too long.
func AttachmentName(iface, hook, name string) string {
	clean := func(s string) string {
		s = strings.ToLower(s)
		return strings.Map(func(r rune) rune {
			if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
				return r
			}
			return '-'
		}, s)
	}
	n := strings.Trim("l3af-"+clean(iface)+"-"+hookShort[hook]+"-"+clean(name), "-")
	if len(n) <= 63 && nameRE.MatchString(n) && !strings.Contains(n, "--") {
		return n
	}
	sum := sha256.Sum256([]byte(iface + "\x00" + hook + "\x00" + name))
	short := strings.Trim(n[:min(len(n), 50)], "-")
	return short + "-" + hex.EncodeToString(sum[:])[:12]
}

// hintKey identifies a package of a repository.
type hintKey struct{ repo, name, version string }

// target is where an L3AF program's package comes from.
type target struct {
	repo, name, version string
}

// hintFor is what the KFaaS repository needs to find and read the
// program's artifact.
func hintFor(p *Program) pkgsource.KFaaSHint {
	h := pkgsource.KFaaSHint{Version: p.Version, Artifact: p.Artifact, Object: p.ObjectFile, Function: p.EntryFunctionName, ProgType: p.ProgType, ChainMap: p.MapName, Maps: p.MapArgs.Names()}
	if p.CmdStart != "" && p.UserProgramDaemon {
		h.Companion = p.CmdStart
		if p.CPU > 0 {
			// l3afd's cpu is a percentage of one CPU.
			h.CPU = strconv.Itoa(p.CPU*10) + "m"
		}
		if p.Memory > 0 {
			// l3afd's memory is in MiB.
			h.Memory = strconv.Itoa(p.Memory) + "Mi"
		}
	}
	return h
}

// sameHint: two programs of one package version must describe it alike.
func sameHint(a, b pkgsource.KFaaSHint) bool {
	return a.Version == b.Version && a.Artifact == b.Artifact && a.Object == b.Object && a.Function == b.Function &&
		a.ProgType == b.ProgType && a.ChainMap == b.ChainMap && a.Companion == b.Companion && a.CPU == b.CPU && a.Memory == b.Memory
}

// attachment builds the leaf attachment of an L3AF program from its
// resolved package: map_args become the package's map parameters, typed
// by the map's BTF (see pkgsource.DeriveManifest).
func attachment(e entry, t target, pkg *repository.Package, netns string) (desired.Attachment, error) {
	p := e.prog
	prio := min(max(p.SeqID, 0), 1000)
	a := desired.Attachment{
		Name:       AttachmentName(e.iface, e.hook, p.Name),
		Package:    t.name + "@" + t.version + "@" + pkg.Digest,
		Repository: t.repo,
		Priority:   &prio,
	}
	switch e.hook {
	case HookXDPIngress:
		a.Hook = desired.Hook{Type: manifest.HookXDP, Interface: e.iface, Netns: netns}
	case HookTCIngress, HookTCEgress:
		a.Hook = desired.Hook{Type: manifest.HookTC, Interface: e.iface, Netns: netns, Direction: strings.TrimPrefix(e.hook, "tc_")}
	}
	params, err := mapParams(p.MapArgs, pkg.Manifest)
	if err != nil {
		return a, err
	}
	if len(params) > 0 {
		a.Params = params
	}
	if pkg.Manifest.Companion != nil {
		a.Companion = &desired.Companion{Args: startArgs(p.StartArgs)}
	}
	return a, nil
}

// startArgs are l3afd's start_args as it passes them: --key=value, in key
// order.
func startArgs(args Args) []string {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("--%s=%v", k, args[k]))
	}
	return out
}

// mapParams turns map_args into parameter values of the package's
// derived map parameters: a key-set map takes the listed numbers
// ("8080,8081", or list entries with value 1), a value map takes the
// value of key 0.
func mapParams(args MapArgs, m *manifest.Manifest) (map[string]any, error) {
	out := map[string]any{}
	set := func(name string, p *manifest.Param, nums []int64, keys []KeyValue) error {
		if p == nil || p.Map == nil {
			return fmt.Errorf("map_args.%s: package %s@%s has no such configuration map (a hash or array map of integers)", name, m.Name, m.Version)
		}
		if keys != nil {
			nums = nil
			for _, kv := range keys {
				switch {
				case p.Map.As == "keys" && kv.Value != 1:
					return fmt.Errorf("map_args.%s: key %d: leaf keeps this map as a set of keys, each with value 1; got value %d", name, kv.Key, kv.Value)
				case p.Map.As == "value" && kv.Key != 0:
					return fmt.Errorf("map_args.%s: leaf sets key 0 of this array; got key %d", name, kv.Key)
				case p.Map.As == "keys":
					nums = append(nums, kv.Key)
				default:
					nums = append(nums, kv.Value)
				}
			}
		}
		if p.Map.As == "value" {
			if len(nums) != 1 {
				return fmt.Errorf("map_args.%s: one value expected for array map %s, got %d", name, p.Map.Name, len(nums))
			}
			out[p.Name] = nums[0]
			return nil
		}
		list := make([]any, len(nums))
		for i, n := range nums {
			list[i] = n
		}
		out[p.Name] = list
		return nil
	}
	for name, s := range args.Strings {
		var nums []int64
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			n, err := strconv.ParseInt(f, 0, 64)
			if err != nil {
				return nil, fmt.Errorf("map_args.%s: %q is not an integer", name, f)
			}
			nums = append(nums, n)
		}
		if err := set(name, m.Param(name), nums, nil); err != nil {
			return nil, err
		}
	}
	for _, a := range args.List {
		if _, dup := out[a.Name]; dup {
			return nil, fmt.Errorf("map_args: map %s given twice", a.Name)
		}
		if err := set(a.Name, m.Param(a.Name), nil, append([]KeyValue{}, a.Args...)); err != nil {
			return nil, err
		}
	}
	return out, nil
}
