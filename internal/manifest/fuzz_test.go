package manifest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzManifestParse checks that Parse never panics, and that whatever it
// accepts is valid and usable: its programs can be looked up and every
// parameter's type parses.
func FuzzManifestParse(f *testing.F) {
	files, _ := filepath.Glob("../../packages/*/" + FileName)
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(validYAML))
	f.Add([]byte(`{"apiVersion":"leaf.dev/v1alpha1","kind":"Package","params":[{"name":"a","type":"list<u8>","default":[1,2.5]}]}`))
	f.Add([]byte("params: [{type: u64, default: 1e400}]"))
	f.Add([]byte(validYAML + "companion: ../bin/tool\n"))
	f.Add([]byte("params: [{type: i64, default: -.inf}]"))
	f.Add([]byte("params: [{type: u8, default: .nan}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if m != nil {
				t.Fatal("Parse returned a manifest with an error")
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse accepted a manifest that does not validate: %v", err)
		}
		for _, p := range m.Programs {
			if got, err := m.Program(p.Name); err != nil || got.Name != p.Name {
				t.Fatalf("Program(%q) = %v, %v", p.Name, got, err)
			}
		}
		for _, p := range m.Params {
			typ, err := ParseType(p.Type)
			if err != nil {
				t.Fatalf("accepted param type %q: %v", p.Type, err)
			}
			if p.Default != nil {
				if _, err := typ.Encode(p.Default); err != nil {
					t.Fatalf("accepted default %v of %s: %v", p.Default, p.Type, err)
				}
				if !typ.List {
					if _, err := typ.GoValue(p.Default); err != nil {
						t.Fatalf("GoValue(%v): %v", p.Default, err)
					}
				}
			}
		}
	})
}

// FuzzTypeEncode checks that Encode never panics on any type string and
// number text, and that accepted values have the type's size.
func FuzzTypeEncode(f *testing.F) {
	f.Add("u8", "255")
	f.Add("i64", "-9223372036854775809")
	f.Add("list<u16>", "80")
	f.Add("u32", "1.5")
	f.Fuzz(func(t *testing.T, typName, num string) {
		typ, err := ParseType(typName)
		if err != nil {
			return
		}
		for _, v := range []any{jsonNumber(num), []any{jsonNumber(num)}} {
			out, err := typ.Encode(v)
			if err != nil {
				continue
			}
			for _, b := range out {
				if len(b) != typ.Size() {
					t.Fatalf("%s.Encode(%q) item is %d bytes, want %d", typName, num, len(b), typ.Size())
				}
			}
		}
	})
}

func jsonNumber(s string) json.Number { return json.Number(s) }
