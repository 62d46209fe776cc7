// Package l3af lets leafd stand in for l3afd: it serves l3afd's REST API
// (/l3af/configs/v1/...) with l3afd's payloads, and turns every call into
// a change of leaf's own desired state, applied by the one reconciler.
// The L3AF configuration itself is kept in the desired state (an
// annotation), so GET answers what was applied and a restart loses
// nothing.
package l3af

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// HostConfig is l3afd's per-interface payload (models.L3afBPFPrograms).
type HostConfig struct {
	HostName    string    `json:"host_name"`
	Iface       string    `json:"iface"`
	IPv4Address string    `json:"ipv4_address,omitempty"`
	BPFPrograms *Programs `json:"bpf_programs"`
}

// Programs are an interface's programs by hook (models.BPFPrograms).
type Programs struct {
	XDPIngress []*Program `json:"xdp_ingress"`
	TCIngress  []*Program `json:"tc_ingress"`
	TCEgress   []*Program `json:"tc_egress"`
	Probes     []*Program `json:"probes"`
}

// Program is one l3afd program (models.BPFProgram), field for field.
type Program struct {
	ID                int          `json:"id"`
	Name              string       `json:"name"`
	SeqID             int          `json:"seq_id"`
	Artifact          string       `json:"artifact"`
	MapName           string       `json:"map_name"`
	CmdStart          string       `json:"cmd_start"`
	CmdStop           string       `json:"cmd_stop"`
	CmdStatus         string       `json:"cmd_status"`
	CmdConfig         string       `json:"cmd_config"`
	CmdUpdate         string       `json:"cmd_update"`
	Version           string       `json:"version"`
	UserProgramDaemon bool         `json:"user_program_daemon"`
	IsPlugin          bool         `json:"is_plugin"`
	CPU               int          `json:"cpu"`
	Memory            int          `json:"memory"`
	AdminStatus       string       `json:"admin_status"`
	ProgType          string       `json:"prog_type"`
	RulesFile         string       `json:"rules_file"`
	Rules             string       `json:"rules"`
	ConfigFilePath    string       `json:"config_file_path"`
	CfgVersion        int          `json:"cfg_version"`
	StartArgs         Args         `json:"start_args"`
	StopArgs          Args         `json:"stop_args"`
	StatusArgs        Args         `json:"status_args"`
	UpdateArgs        Args         `json:"update_args"`
	MapArgs           MapArgs      `json:"map_args"`
	ConfigArgs        Args         `json:"config_args"`
	MonitorMaps       []MonitorMap `json:"monitor_maps"`
	EPRURL            string       `json:"ebpf_package_repo_url"`
	ObjectFile        string       `json:"object_file"`
	EntryFunctionName string       `json:"entry_function_name"`
}

// Args are a user program's arguments (l3afd's L3afDNFArgs).
type Args map[string]any

// MonitorMap is a map l3afd reads for metrics.
type MonitorMap struct {
	Name       string `json:"name"`
	Key        int    `json:"key"`
	Aggregator string `json:"aggregator"`
}

// Aggregators l3afd knows.
const (
	AggScalar  = "scalar"
	AggMaxRate = "max-rate"
	AggAvg     = "avg"
)

// KeyValue is one entry of a map argument.
type KeyValue struct {
	Key   int64 `json:"key"`
	Value int64 `json:"value"`
}

// MapArg sets one map: l3afd's current shape.
type MapArg struct {
	Name string     `json:"name"`
	Args []KeyValue `json:"args"`
}

// MapArgs are l3afd's map_args in either shape it has used: the
// documented object of strings ({"rl_ports_map": "8080,8081"}) or the
// current list ([{"name": ..., "args": [{"key": k, "value": v}]}]). It
// remembers the shape, so GET answers in the shape it was given.
type MapArgs struct {
	// Strings holds the documented shape: map name → comma-separated
	// values.
	Strings map[string]string
	// List holds the current shape.
	List []MapArg
}

// UnmarshalJSON reads either shape; numbers in the object shape are
// accepted as their decimal text.
func (m *MapArgs) UnmarshalJSON(data []byte) error {
	*m = MapArgs{}
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		return nil
	case len(data) > 0 && data[0] == '[':
		return json.Unmarshal(data, &m.List)
	case len(data) > 0 && data[0] == '{':
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(data, &raw); err != nil {
			return err
		}
		m.Strings = map[string]string{}
		for k, v := range raw {
			var s string
			if err := json.Unmarshal(v, &s); err == nil {
				m.Strings[k] = s
				continue
			}
			var n json.Number
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("map_args.%s: want a string such as \"8080,8081\" or a number", k)
			}
			m.Strings[k] = n.String()
		}
		return nil
	}
	return fmt.Errorf("map_args: want an object of strings or a list of {name, args}")
}

// MarshalJSON writes the shape it was given (null when empty).
func (m MapArgs) MarshalJSON() ([]byte, error) {
	switch {
	case m.Strings != nil:
		return json.Marshal(m.Strings)
	case m.List != nil:
		return json.Marshal(m.List)
	}
	return []byte("null"), nil
}

// Names lists the maps the arguments set, sorted.
func (m MapArgs) Names() []string {
	var out []string
	for k := range m.Strings {
		out = append(out, k)
	}
	for _, a := range m.List {
		out = append(out, a.Name)
	}
	sort.Strings(out)
	return out
}

// Names is l3afd's delete payload (models.L3afBPFProgramNames).
type Names struct {
	HostName    string        `json:"host_name"`
	Iface       string        `json:"iface"`
	IPv4Address string        `json:"ipv4_address,omitempty"`
	BPFPrograms *ProgramNames `json:"bpf_programs"`
}

// ProgramNames are the names to remove, by hook.
type ProgramNames struct {
	XDPIngress []string `json:"xdp_ingress"`
	TCIngress  []string `json:"tc_ingress"`
	TCEgress   []string `json:"tc_egress"`
	Probes     []string `json:"probes"`
}

// Hooks of an interface, as l3afd's payload groups programs.
const (
	HookXDPIngress = "xdp_ingress"
	HookTCIngress  = "tc_ingress"
	HookTCEgress   = "tc_egress"
	HookProbes     = "probes"
)

// lists returns the program lists by hook, for walking them in a fixed
// order.
func (p *Programs) lists() []struct {
	hook  string
	progs *[]*Program
} {
	return []struct {
		hook  string
		progs *[]*Program
	}{{HookXDPIngress, &p.XDPIngress}, {HookTCIngress, &p.TCIngress}, {HookTCEgress, &p.TCEgress}, {HookProbes, &p.Probes}}
}

func (n *ProgramNames) lists() map[string][]string {
	return map[string][]string{HookXDPIngress: n.XDPIngress, HookTCIngress: n.TCIngress, HookTCEgress: n.TCEgress, HookProbes: n.Probes}
}
