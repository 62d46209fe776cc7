package companion

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// cgroupRoots are where companions' cgroups go: this leafd's own subtree
// (sub, "leaf-<instance>") under the cgroup v2 mount, and on hybrid hosts
// (memory and cpu controllers still on v1 hierarchies) under those v1
// hierarchies too, for the limits. A leafd creates, sweeps and removes
// only cgroups inside its own subtree, so two leafds on one host (other
// state directories) never touch each other's companions.
type cgroupRoots struct {
	v2       string // "" if no cgroup2 mount
	v1Memory string // "" unless memory is a v1 controller
	v1CPU    string
	sub      string
}

// CgroupName is the default subtree of a leafd: "leaf-" and its state
// directory with "/" turned into "-" ("/var/lib/leaf" →
// "leaf-var-lib-leaf"); a directory name with other characters, or a
// very long one, is named by a hash of it instead. It sits beside, not
// below, the "leaf" cgroup older leafds used and swept whole.
func CgroupName(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	name := strings.ReplaceAll(strings.Trim(filepath.Clean(abs), "/"), "/", "-")
	ok := name != "" && len(name) <= 100
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			ok = false
		}
	}
	if !ok || name[0] == '.' {
		sum := sha256.Sum256([]byte(abs))
		name = "state-" + hex.EncodeToString(sum[:8])
	}
	return "leaf-" + name
}

// checkCgroupName refuses a configured subtree that would leave the
// cgroup2 mount or sit at its top.
func checkCgroupName(sub string) error {
	clean := filepath.Clean(sub)
	// "leaf" itself is the parent every leafd shares: sweeping it would
	// reach the others' companions.
	if sub == "" || filepath.IsAbs(sub) || clean != sub || clean == "." || clean == "leaf" || strings.HasPrefix(clean, "..") {
		return fmt.Errorf("companion cgroup %q: want a relative path below the cgroup2 mount, such as leaf-NAME", sub)
	}
	return nil
}

// findCgroups reads /proc/self/mountinfo for the cgroup2 mount and the
// v1 memory and cpu hierarchies.
func findCgroups() (cgroupRoots, error) {
	var r cgroupRoots
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return r, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		mnt := fields[4]
		switch tail[0] {
		case "cgroup2":
			if r.v2 == "" {
				r.v2 = mnt
			}
		case "cgroup":
			for _, o := range strings.Split(tail[2], ",") {
				switch o {
				case "memory":
					r.v1Memory = mnt
				case "cpu":
					r.v1CPU = mnt
				}
			}
		}
	}
	if r.v2 == "" {
		return r, errors.New("no cgroup2 file system is mounted")
	}
	return r, sc.Err()
}

// cgroup is one companion's cgroup: the v2 directory the process starts
// in (CLONE_INTO_CGROUP), and v1 directories carrying limits v2 cannot.
type cgroup struct {
	sub string // the leafd's subtree, for the v1 directories
	v2  string
	v1  []string
	fd  *os.File // the v2 directory, for SysProcAttr.CgroupFD
	Max string   // where the memory limit was written, for status
}

// newCgroup creates the companion's cgroup and writes its limits.
func (r cgroupRoots) newCgroup(name string, res manifest.Resources) (*cgroup, error) {
	mem, err := res.MemoryBytes()
	if err != nil {
		return nil, err
	}
	quota, err := res.CPUQuota()
	if err != nil {
		return nil, err
	}
	base := filepath.Join(r.v2, r.sub)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	// Hand the memory and cpu controllers down, level by level, where
	// this host has them in v2; on a hybrid host the writes fail and v1
	// takes the limits.
	dir := r.v2
	os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0)
	for _, part := range strings.Split(r.sub, "/") {
		dir = filepath.Join(dir, part)
		os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0)
	}
	cg := &cgroup{v2: filepath.Join(base, name), sub: r.sub}
	cg.remove() // a leftover of a leafd that was killed
	if err := os.Mkdir(cg.v2, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	if err := cg.limit(r, name, mem, quota); err != nil {
		cg.remove()
		return nil, err
	}
	if cg.fd, err = os.Open(cg.v2); err != nil {
		cg.remove()
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	return cg, nil
}

func (cg *cgroup) limit(r cgroupRoots, name string, mem, quota uint64) error {
	if mem > 0 {
		if err := writeLimit(cg.v2, "memory.max", strconv.FormatUint(mem, 10)); err == nil {
			cg.Max = filepath.Join(cg.v2, "memory.max")
		} else if dir, err := cg.v1Dir(r.v1Memory, name); err != nil {
			return fmt.Errorf("memory limit: no v2 memory controller and %w", err)
		} else if err := writeLimit(dir, "memory.limit_in_bytes", strconv.FormatUint(mem, 10)); err != nil {
			return err
		} else {
			cg.Max = filepath.Join(dir, "memory.limit_in_bytes")
		}
	}
	if quota > 0 {
		v2 := fmt.Sprintf("%d %d", quota, manifest.CPUPeriod)
		if err := writeLimit(cg.v2, "cpu.max", v2); err != nil {
			dir, err := cg.v1Dir(r.v1CPU, name)
			if err != nil {
				return fmt.Errorf("cpu limit: no v2 cpu controller and %w", err)
			}
			if err := writeLimit(dir, "cpu.cfs_period_us", strconv.Itoa(manifest.CPUPeriod)); err != nil {
				return err
			}
			if err := writeLimit(dir, "cpu.cfs_quota_us", strconv.FormatUint(quota, 10)); err != nil {
				return err
			}
		}
	}
	return nil
}

// v1Dir creates the companion's directory in a v1 hierarchy.
func (cg *cgroup) v1Dir(root, name string) (string, error) {
	if root == "" {
		return "", errors.New("no v1 hierarchy for it either")
	}
	dir := filepath.Join(root, cg.sub, name)
	os.Remove(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cgroup: %w", err)
	}
	cg.v1 = append(cg.v1, dir)
	return dir, nil
}

func writeLimit(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("cgroup %s: %w", file, err)
	}
	return nil
}

// join moves a started process into the v1 directories. The v2 cgroup it
// started in already; v1 membership follows within microseconds of the
// start, which is the best v1 allows without a helper in the child.
func (cg *cgroup) join(pid int) error {
	for _, dir := range cg.v1 {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("join %s: %w", dir, err)
		}
	}
	return nil
}

// remove kills whatever is left in the cgroup and removes it.
func (cg *cgroup) remove() {
	if cg.fd != nil {
		cg.fd.Close()
		cg.fd = nil
	}
	os.WriteFile(filepath.Join(cg.v2, "cgroup.kill"), []byte("1"), 0)
	for i := 0; i < 100 && os.Remove(cg.v2) != nil; i++ {
		if _, err := os.Stat(cg.v2); err != nil {
			break
		}
		sleepBriefly()
	}
	for _, dir := range cg.v1 {
		os.Remove(dir)
	}
}

// removeLeftovers kills the companions a previous run of this leafd left
// behind (one that was killed before it could stop them) and removes
// their cgroups: inside its own subtree only.
func (r cgroupRoots) removeLeftovers() {
	entries, _ := os.ReadDir(filepath.Join(r.v2, r.sub))
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		cg := &cgroup{v2: filepath.Join(r.v2, r.sub, e.Name()), sub: r.sub}
		for _, root := range []string{r.v1Memory, r.v1CPU} {
			if root != "" {
				cg.v1 = append(cg.v1, filepath.Join(root, r.sub, e.Name()))
			}
		}
		cg.remove()
	}
}
