// Command leaf-firewall installs a rule set into the maps of a firewall
// attachment (packages/firewall) and shows its per-rule hit counters.
//
// As the package's companion it receives the maps from leafd
// (LEAF_MAP_FDS); run by an operator it opens leafd's pins
// (--pins <bpffs>/attachments/<name>/maps). Rules come from --rule flags
// (in the desired state's companion args) or --rules-file; with --watch
// the file is re-read when it changes and the new rule set replaces the old
// one atomically.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/leaf-ebpf/leaf/internal/firewall"
	"github.com/leaf-ebpf/leaf/internal/mapfds"
)

type ruleFlags []string

func (r *ruleFlags) String() string     { return strings.Join(*r, "; ") }
func (r *ruleFlags) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "leaf-firewall:", err)
		os.Exit(1)
	}
}

func run() error {
	var rules ruleFlags
	file := flag.String("rules-file", "", "read the rule set from this file (one rule per line)")
	flag.Var(&rules, "rule", "a rule, in order (repeatable); `default allow|deny` sets the policy")
	pins := flag.String("pins", "", "open the maps pinned in this directory instead of LEAF_MAP_FDS")
	watch := flag.Duration("watch", 0, "re-read --rules-file at this interval and install it when it changed; keep running")
	hits := flag.Bool("hits", false, "print the current rule set's per-rule hit counters and exit")
	flag.Parse()

	maps, err := openMaps(*pins)
	if err != nil {
		return err
	}
	if *hits {
		return printHits(maps)
	}
	if (*file == "") == (len(rules) == 0) {
		return fmt.Errorf("give either --rules-file or --rule")
	}
	text := []byte(strings.Join(rules, "\n"))
	if *file != "" {
		if text, err = readRules(*file); err != nil {
			return err
		}
	}
	if err := install(maps, text); err != nil {
		return err
	}
	if *watch <= 0 {
		if os.Getenv("LEAF_ATTACHMENT") != "" {
			select {} // a companion stays, or leafd starts it again
		}
		return nil
	}
	for range time.Tick(*watch) {
		next, err := readRules(*file)
		if err != nil {
			fmt.Fprintln(os.Stderr, "leaf-firewall:", err, "(the running rule set stays)")
			continue
		}
		if bytes.Equal(next, text) {
			continue
		}
		if err := install(maps, next); err != nil {
			fmt.Fprintln(os.Stderr, "leaf-firewall:", err, "(the running rule set stays)")
			continue
		}
		text = next
	}
	return nil
}

func readRules(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > firewall.MaxRulesBytes {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", path, firewall.MaxRulesBytes)
	}
	var b bytes.Buffer
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

func install(maps firewall.Maps, text []byte) error {
	rs, err := firewall.Parse(bytes.NewReader(text))
	if err != nil {
		return err
	}
	took, err := maps.Install(rs)
	if err != nil {
		return err
	}
	fmt.Printf("installed %d rules in %v\n", len(rs.Rules), took.Round(time.Microsecond))
	return nil
}

func openMaps(pins string) (firewall.Maps, error) {
	maps, err := mapfds.Open(pins, firewall.MapNames...)
	if err != nil {
		return nil, err
	}
	return firewall.Maps(maps), nil
}

func printHits(maps firewall.Maps) error {
	hits, err := maps.Hits()
	if err != nil {
		return err
	}
	for i, n := range hits {
		fmt.Printf("%d\t%d\n", i, n)
	}
	return nil
}
