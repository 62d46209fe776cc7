package desired

import (
	"os"
	"testing"
)

// FuzzDesiredParse checks that Parse never panics, that it fails only with
// Errors, and that whatever it accepts validates again, clones to an equal
// state and has unique, well-formed attachment names.
func FuzzDesiredParse(f *testing.F) {
	data, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(doc(xdpAtt, tcAtt))
	f.Add([]byte(`{"apiVersion":"leaf.dev/v1alpha1","kind":"HostState","spec":{"attachments":[{"name":"a","package":"p@1","hook":{"type":"uprobe","binary":"/bin/sh","function":"main","pid":-1}}]}}`))
	f.Add([]byte(header + "spec: {attachments: [{name: a, package: p@1, priority: 99999999999999999999, hook: {type: xdp, interface: e}}]}\n"))
	f.Add([]byte(header + "spec: {attachments: [{name: a, package: p@1, params: {x: [1, {y: 2}]}, hook: {type: kprobe, function: f}}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := Parse(data)
		if err != nil {
			if st != nil {
				t.Fatal("Parse returned a state with an error")
			}
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error is %T, not Errors", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := st.Validate(); err != nil {
			t.Fatalf("accepted state does not validate: %v", err)
		}
		c := st.Clone()
		if err := c.Validate(); err != nil {
			t.Fatalf("clone does not validate: %v", err)
		}
		if len(c.Spec.Attachments) != len(st.Spec.Attachments) {
			t.Fatalf("clone has %d attachments, original %d", len(c.Spec.Attachments), len(st.Spec.Attachments))
		}
		seen := map[string]bool{}
		for _, a := range st.Spec.Attachments {
			if seen[a.Name] {
				t.Fatalf("duplicate name %q accepted", a.Name)
			}
			seen[a.Name] = true
			if !nameRE.MatchString(a.Name) {
				t.Fatalf("invalid name %q accepted", a.Name)
			}
			if _, _, err := ParseRef(a.Package); err != nil {
				t.Fatalf("invalid package %q accepted", a.Package)
			}
			if p := a.PriorityOrDefault(); p < 0 || p > 1000 {
				t.Fatalf("priority %d accepted", p)
			}
			_ = a.Hook.Key()
			_ = a.Hook.String()
		}
	})
}
