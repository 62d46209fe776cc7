// Package yamljson decodes YAML or JSON documents strictly: unknown fields
// and duplicate keys are errors, and numbers keep their full precision.
package yamljson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
