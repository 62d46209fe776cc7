// Package yamljson decodes YAML or JSON documents strictly: unknown fields
// and duplicate keys are errors, and numbers keep their full precision.
package yamljson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// Decode parses data (YAML or JSON; JSON is YAML) into out, rejecting
// unknown fields and duplicate keys. Numbers in interface{} fields decode as
// json.Number so that 64-bit values survive.
func Decode(data []byte, out any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("document is empty")
	}
	if err := singleDocument(data); err != nil {
		return err
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return fmt.Errorf("malformed document: %s", cleanYAMLError(err))
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		if path := unknownFieldPath(js, reflect.TypeOf(out)); path != "" {
			return fmt.Errorf("%s: unknown field %q", path, path[strings.LastIndex(path, ".")+1:])
		}
		return cleanJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed document: more than one document")
	}
	return nil
}

// singleDocument refuses a stream of several YAML documents: decoding
// only the first would silently drop the rest.
func singleDocument(data []byte) error {
	// A second document needs a "---" or "..." marker: without either,
	// there is one, and parsing the whole document once more to find out
	// would cost as much as decoding it.
	if !bytes.Contains(data, []byte("---")) && !bytes.Contains(data, []byte("...")) {
		return nil
	}
	dec := yamlv2.NewDecoder(bytes.NewReader(data))
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil // malformed: the strict decoder reports it
	}
	if err := dec.Decode(&doc); err != io.EOF {
		return errors.New("malformed document: more than one YAML document (a --- separator); give one document")
	}
	return nil
}

func cleanYAMLError(err error) string {
	return strings.TrimPrefix(strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "), "yaml: ")
}

// cleanJSONError turns encoding/json's messages into ones that name the
// field in the terms of the document.
func cleanJSONError(err error) error {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		field := ute.Field
		if field == "" {
			field = "document"
		}
		return fmt.Errorf("%s: expected %s, got %s", field, ute.Type.String(), ute.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return fmt.Errorf("%s", msg)
}

// unknownFieldPath finds the first field of the document that the type
// does not have, and names it by its path (spec.attachments[1].hook.bogus),
// so that the error says where the typo is.
func unknownFieldPath(js []byte, t reflect.Type) string {
	var doc any
	if json.Unmarshal(js, &doc) != nil {
		return ""
	}
	return walkUnknown(doc, t, "")
}

func walkUnknown(v any, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		if t.Kind() == reflect.Map {
			for _, k := range sortedKeys(x) {
				if p := walkUnknown(x[k], t.Elem(), join(path, k)); p != "" {
					return p
				}
			}
			return ""
		}
		if t.Kind() != reflect.Struct {
			return ""
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(x) {
			ft, ok := fields[k]
			if !ok {
				return join(path, k)
			}
			if p := walkUnknown(x[k], ft, join(path, k)); p != "" {
				return p
			}
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return ""
		}
		for i, e := range x {
			if p := walkUnknown(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

// jsonFields maps a struct's JSON names to their types, following
// embedded structs as encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
