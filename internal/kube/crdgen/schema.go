// Package crdgen builds leaf's CustomResourceDefinitions from the Go
// types of api/kube/v1alpha1: the OpenAPI schema comes from the types by
// reflection (field names and required-ness from their json tags, field
// descriptions from their doc comments), the validation rules, bounds and
// printer columns from the tables in crds.go. The YAML it writes is
// committed under deploy/kubernetes/crds and checked by a test.
package crdgen

import (
	"fmt"
	"reflect"
	"strings"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	timeType     = reflect.TypeFor[metav1.Time]()
	durationType = reflect.TypeFor[metav1.Duration]()
)

// schemaGen turns Go types into structural OpenAPI v3 schemas.
type schemaGen struct {
	// docs maps "pkgpath.Type.Field" to the field's doc comment.
	docs map[string]string
	// patch adjusts the schema at a path such as
	// "spec.attachments[].priority" (bounds, patterns, CEL rules).
	patch map[string]func(*apiextv1.JSONSchemaProps)
}

// schema returns the schema of t, at path (for the patches).
func (g *schemaGen) schema(t reflect.Type, path string) apiextv1.JSONSchemaProps {
	s := g.typeSchema(t, path)
	if p := g.patch[path]; p != nil {
		p(&s)
	}
	return s
}

func (g *schemaGen) typeSchema(t reflect.Type, path string) apiextv1.JSONSchemaProps {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case timeType:
		return apiextv1.JSONSchemaProps{Type: "string", Format: "date-time"}
	case durationType:
		return apiextv1.JSONSchemaProps{Type: "string"}
	}
	switch t.Kind() {
	case reflect.String:
		return apiextv1.JSONSchemaProps{Type: "string"}
	case reflect.Bool:
		return apiextv1.JSONSchemaProps{Type: "boolean"}
	case reflect.Int, reflect.Int64, reflect.Uint32, reflect.Uint64:
		return apiextv1.JSONSchemaProps{Type: "integer", Format: "int64"}
	case reflect.Int32:
		return apiextv1.JSONSchemaProps{Type: "integer", Format: "int32"}
	case reflect.Float32, reflect.Float64:
		return apiextv1.JSONSchemaProps{Type: "number"}
	case reflect.Interface:
		// Any JSON value (package parameters): kept as given.
		return apiextv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}
	case reflect.Slice:
		items := g.schema(t.Elem(), path+"[]")
		return apiextv1.JSONSchemaProps{Type: "array", Items: &apiextv1.JSONSchemaPropsOrArray{Schema: &items}}
	case reflect.Map:
		if t.Elem().Kind() == reflect.Interface {
			return apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr(true)}
		}
		v := g.schema(t.Elem(), path+"{}")
		return apiextv1.JSONSchemaProps{Type: "object", AdditionalProperties: &apiextv1.JSONSchemaPropsOrBool{Allows: true, Schema: &v}}
	case reflect.Struct:
		return g.structSchema(t, path)
	}
	panic(fmt.Sprintf("crdgen: no schema for %v at %s", t, path))
}

func (g *schemaGen) structSchema(t reflect.Type, path string) apiextv1.JSONSchemaProps {
	s := apiextv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextv1.JSONSchemaProps{}}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && name == "" {
			continue // TypeMeta: apiVersion and kind are the API server's
		}
		if name == "" {
			name = f.Name
		}
		p := strings.TrimPrefix(path+"."+name, ".")
		var fs apiextv1.JSONSchemaProps
		if f.Type == reflect.TypeFor[metav1.ObjectMeta]() {
			fs = apiextv1.JSONSchemaProps{Type: "object"}
		} else {
			fs = g.schema(f.Type, p)
		}
		if fs.Description == "" {
			fs.Description = g.docs[t.PkgPath()+"."+t.Name()+"."+f.Name]
		}
		s.Properties[name] = fs
		optional := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") || f.Type.Kind() == reflect.Pointer
		if !optional {
			s.Required = append(s.Required, name)
		}
	}
	return s
}

func ptr[T any](v T) *T { return &v }
