package desired

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// MaxChainLength is the most programs one XDP or TC hook can chain: the
// kernel allows 33 tail calls in a row, and leaf keeps one in reserve.
const MaxChainLength = 32

// Verdicts by hook type: the return values of XDP and TC programs.
var verdicts = map[string]map[string]int32{
	manifest.HookXDP: {
		"XDP_ABORTED": 0, "XDP_DROP": 1, "XDP_PASS": 2, "XDP_TX": 3, "XDP_REDIRECT": 4,
	},
	manifest.HookTC: {
		"TC_ACT_UNSPEC": -1, "TC_ACT_OK": 0, "TC_ACT_RECLASSIFY": 1, "TC_ACT_SHOT": 2,
		"TC_ACT_PIPE": 3, "TC_ACT_STOLEN": 4, "TC_ACT_QUEUED": 5, "TC_ACT_REPEAT": 6,
		"TC_ACT_REDIRECT": 7, "TC_ACT_TRAP": 8,
	},
}

// DefaultProceedOn is what a chain member proceeds on when neither the
// desired state nor the package says: XDP_PASS, or TC_ACT_OK and
// TC_ACT_UNSPEC.
func DefaultProceedOn(hookType string) []int32 {
	if hookType == manifest.HookTC {
		return []int32{-1, 0}
	}
	return []int32{2}
}

// ParseVerdict turns a verdict name (XDP_PASS, TC_ACT_OK, …) or number
// into its value for the hook type.
func ParseVerdict(hookType, s string) (int32, error) {
	table, ok := verdicts[hookType]
	if !ok {
		return 0, fmt.Errorf("verdicts only apply to xdp and tc hooks")
	}
	if v, ok := table[strings.ToUpper(s)]; ok {
		return v, nil
	}
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		return int32(n), nil
	}
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	sort.Strings(names)
	return 0, fmt.Errorf("unknown %s verdict %q (known: %s, or a number)", hookType, s, strings.Join(names, ", "))
}

// VerdictName names a verdict value for the hook type.
func VerdictName(hookType string, v int32) string {
	for n, val := range verdicts[hookType] {
		if val == v {
			return n
		}
	}
	return strconv.Itoa(int(v))
}

// ParseVerdicts parses a list of verdicts, sorted and without duplicates.
func ParseVerdicts(hookType string, in []string) ([]int32, error) {
	var out []int32
	seen := map[int32]bool{}
	for _, s := range in {
		v, err := ParseVerdict(hookType, s)
		if err != nil {
			return nil, err
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}
