package main

import (
	"regexp"
	"sort"
	"strings"
	"unicode"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// Weak is a field whose description does not help a reader.
type Weak struct {
	Kind, Path, Reason string
}

func (w Weak) String() string { return w.Kind + ": " + w.Path + " (" + w.Reason + ")" }

// stopWords carry no information about a field on their own.
var stopWords = map[string]bool{
	"a": true, "an": true, "the": true, "is": true, "are": true, "of": true, "for": true, "this": true, "that": true,
	"it": true, "its": true, "to": true, "field": true, "value": true, "object": true, "the.": true, "be": true,
	"in": true, "on": true, "and": true, "or": true, "as": true, "by": true, "with": true, "s": true,
}

var scaffoldRE = regexp.MustCompile(`(?i)^\w+ defines the (desired|observed) state of \w+\.?$|insert additional|\btodo\b|run "make" to regenerate`)

// WeakDescriptions lists the properties of every version whose description is empty, only repeats the field's
// name, or is kubebuilder's scaffold text. The standard apiVersion, kind and metadata at the top are left out.
func WeakDescriptions(c CRD) []Weak {
	seen := map[string]bool{}
	var out []Weak
	for _, v := range c.Def.Spec.Versions {
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		walkProperties("", v.Schema.OpenAPIV3Schema, func(path, name string, p *apiextensionsv1.JSONSchemaProps) {
			if path == "apiVersion" || path == "kind" || path == "metadata" || seen[path] {
				return
			}
			if reason := weakReason(name, p.Description); reason != "" {
				seen[path] = true
				out = append(out, Weak{Kind: c.Def.Spec.Names.Kind, Path: path, Reason: reason})
			}
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// walkProperties calls fn for every named property under s, depth first, with the path conventions of the
// reference (items "[]", map values ".<key>").
func walkProperties(path string, s *apiextensionsv1.JSONSchemaProps, fn func(path, name string, p *apiextensionsv1.JSONSchemaProps)) {
	if s == nil {
		return
	}
	for _, name := range sortedKeys(s.Properties) {
		p := s.Properties[name]
		fn(join(path, name), name, &p)
		walkProperties(join(path, name), &p, fn)
	}
	if s.Items != nil && s.Items.Schema != nil {
		walkProperties(path+itemsSuffix, s.Items.Schema, fn)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		walkProperties(path+valueSuffix, s.AdditionalProperties.Schema, fn)
	}
}

func weakReason(name, desc string) string {
	d := fold(desc)
	if d == "" {
		return "no description"
	}
	if scaffoldRE.MatchString(d) {
		return "scaffold text"
	}
	nameWords := map[string]bool{strings.ToLower(name): true}
	for _, w := range splitCamel(name) {
		nameWords[strings.ToLower(w)] = true
	}
	for _, w := range strings.FieldsFunc(strings.ToLower(d), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if !stopWords[w] && !nameWords[w] && !nameWords[strings.TrimSuffix(w, "s")] {
			return ""
		}
	}
	return "only repeats the field name"
}

// splitCamel splits "observedGeneration" into "observed", "Generation" and "caSecretRef" into "ca", "Secret", "Ref".
func splitCamel(s string) []string {
	var words []string
	var cur []rune
	rs := []rune(s)
	for i, r := range rs {
		if i > 0 && unicode.IsUpper(r) && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
			words = append(words, string(cur))
			cur = nil
		}
		cur = append(cur, r)
	}
	if len(cur) > 0 {
		words = append(words, string(cur))
	}
	return words
}
