package yamljson

import (
	"encoding/json"
	"strings"
	"testing"
)

type doc struct {
	Name  string         `json:"name"`
	Count int            `json:"count"`
	Extra map[string]any `json:"extra,omitempty"`
	Items []doc          `json:"items,omitempty"`
}

func TestDecode(t *testing.T) {
	var d doc
	if err := Decode([]byte("name: a\ncount: 3\nextra: {big: 18446744073709551615}\n"), &d); err != nil {
		t.Fatal(err)
	}
	if d.Name != "a" || d.Count != 3 {
		t.Fatalf("decoded %+v", d)
	}
	if n, ok := d.Extra["big"].(json.Number); !ok || n.String() != "18446744073709551615" {
		t.Fatalf("big number lost precision: %#v", d.Extra["big"])
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"name: [", "malformed"},
		{"name: a\nname: b\n", "malformed"},
		{"name: a\nbogus: 1\n", `bogus: unknown field "bogus"`},
		{"extra: {x: 1}\nitems: [{name: a}, {nme: b}]\n", `items[1].nme: unknown field "nme"`},
		{"count: many\n", "count: expected int, got string"},
		{"name: a\n---\nname: b\n", "more than one YAML document"},
		{"name: a\n...\nname: b\n", "more than one YAML document"},
	} {
		var d doc
		err := Decode([]byte(tc.in), &d)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}
