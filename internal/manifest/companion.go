package manifest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Companion is a package's user-space program (L3AF's "user programs"),
// which leafd runs beside each attachment that asks for it, with only the
// privileges declared here.
type Companion struct {
	// Path is the executable, relative to the package root.
	Path string `json:"path"`
	// Capabilities it keeps (for example CAP_BPF to use its maps); every
	// other capability is dropped.
	Capabilities []string `json:"capabilities,omitempty"`
	// User and Group it runs as; never 0 (root). Default 65534 (nobody).
	User  *uint32 `json:"user,omitempty"`
	Group *uint32 `json:"group,omitempty"`
	// Resources bound its cgroup.
	Resources Resources `json:"resources,omitempty"`
}

// Resources are a companion's cgroup limits. Empty means no limit.
type Resources struct {
	// Memory is the most memory it may use: bytes, or with a suffix K, M,
	// G (powers of 1000) or Ki, Mi, Gi (powers of 1024).
	Memory string `json:"memory,omitempty"`
	// CPU is how much of one CPU it may use: "0.5", or millicores "500m".
	CPU string `json:"cpu,omitempty"`
}

// DefaultCompanionID is the user and group a companion runs as by default.
const DefaultCompanionID = 65534

// Capabilities leaf knows by name, with their numbers in the Linux ABI
// (linux/capability.h). They are spelled out rather than taken from
// x/sys/unix so that manifests validate the same on every OS the leaf CLI
// runs on; a Linux test checks them against x/sys/unix.
var capabilities = map[string]uintptr{
	"CAP_DAC_READ_SEARCH": 2, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12,
	"CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
	"CAP_SYS_RESOURCE": 24, "CAP_PERFMON": 38, "CAP_BPF": 39,
}

// CapabilityValues returns the declared capabilities as numbers.
func (c *Companion) CapabilityValues() []uintptr {
	var out []uintptr
	for _, n := range c.Capabilities {
		out = append(out, capabilities[n])
	}
	return out
}

// IDs returns the user and group the companion runs as.
func (c *Companion) IDs() (uid, gid uint32) {
	uid, gid = DefaultCompanionID, DefaultCompanionID
	if c.User != nil {
		uid = *c.User
	}
	if c.Group != nil {
		gid = *c.Group
	}
	return uid, gid
}

// MemoryBytes is the memory limit in bytes, 0 for none.
func (r Resources) MemoryBytes() (uint64, error) {
	if r.Memory == "" {
		return 0, nil
	}
	s, mult := r.Memory, uint64(1)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > math.MaxUint64/mult {
		return 0, fmt.Errorf("%q is not a memory size such as 64Mi", r.Memory)
	}
	if n*mult < 1<<20 {
		return 0, fmt.Errorf("%q is below 1Mi; a process cannot start in that", r.Memory)
	}
	return n * mult, nil
}

// CPUQuota is the CPU limit as cgroup v2's cpu.max quota for a 100 ms
// period (in microseconds), 0 for none.
func (r Resources) CPUQuota() (uint64, error) {
	if r.CPU == "" {
		return 0, nil
	}
	var cpus float64
	var err error
	if m, ok := strings.CutSuffix(r.CPU, "m"); ok {
		var n uint64
		n, err = strconv.ParseUint(m, 10, 32)
		cpus = float64(n) / 1000
	} else {
		cpus, err = strconv.ParseFloat(r.CPU, 64)
	}
	if err != nil || cpus <= 0 || cpus > 1024 || math.IsNaN(cpus) {
		return 0, fmt.Errorf("%q is not a CPU share such as 0.5 or 500m", r.CPU)
	}
	q := uint64(cpus * CPUPeriod)
	if q < 1000 {
		return 0, fmt.Errorf("%q is below the 1ms per period the kernel accepts", r.CPU)
	}
	return q, nil
}

// CPUPeriod is the cpu.max period leaf uses, in microseconds.
const CPUPeriod = 100000

func (c *Companion) validate(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	if c.Path == "" || strings.HasPrefix(c.Path, "/") || strings.Contains(c.Path, "..") {
		add("path", "%q must be a relative path inside the package", c.Path)
	}
	for i, n := range c.Capabilities {
		if _, ok := capabilities[n]; !ok {
			add(fmt.Sprintf("capabilities[%d]", i), "unknown capability %q (known: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE, CAP_SYS_ADMIN, CAP_SYS_RESOURCE, CAP_DAC_READ_SEARCH, CAP_IPC_LOCK, CAP_SYS_PTRACE)", n)
		}
	}
	if c.User != nil && *c.User == 0 {
		add("user", "companions never run as root; declare the capabilities they need")
	}
	if c.Group != nil && *c.Group == 0 {
		add("group", "companions never run in group root")
	}
	if _, err := c.Resources.MemoryBytes(); err != nil {
		add("resources.memory", "%v", err)
	}
	if _, err := c.Resources.CPUQuota(); err != nil {
		add("resources.cpu", "%v", err)
	}
	return errs
}
