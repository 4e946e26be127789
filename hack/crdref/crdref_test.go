package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

const (
	fixtureDir = "testdata/crds"
	realDir    = "../../config/crd/bases"
)

// splitRow splits a Markdown table row into its cells: a "|" ends a cell unless a backslash escapes it (as GitHub
// reads tables, also inside code spans).
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	if strings.HasSuffix(line, "|") && !strings.HasSuffix(line, `\|`) {
		line = line[:len(line)-1]
	}
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		if line[i] == '|' && (i == 0 || line[i-1] != '\\') {
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteByte(line[i])
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// row is the cells of the first field-table row for path, or nil.
func row(md, path string) []string {
	prefix := "| `" + path + "` |"
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, prefix) {
			return splitRow(line)
		}
	}
	return nil
}

// versionPart is the part of a kind's page about one version.
func versionPart(md, version string) string {
	start := strings.Index(md, "## Version `"+version+"`")
	ExpectWithOffset(1, start).To(BeNumerically(">=", 0), "no section for version %s", version)
	rest := md[start+1:]
	if end := strings.Index(rest, "\n## Version "); end >= 0 {
		return rest[:end]
	}
	return rest
}

// expectWellFormed checks that every table has as many cells in each row as in its header, that every in-page
// link has a target and that no id is used twice.
func expectWellFormed(md string) {
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "|") {
			continue
		}
		header := splitRow(lines[i])
		ExpectWithOffset(1, i+1).To(BeNumerically("<", len(lines)))
		ExpectWithOffset(1, lines[i+1]).To(MatchRegexp(`^\|(---\|)+$`), "delimiter row after %q", lines[i])
		j := i + 2
		for ; j < len(lines) && strings.HasPrefix(lines[j], "|"); j++ {
			ExpectWithOffset(1, splitRow(lines[j])).To(HaveLen(len(header)), "row %q of the table %q", lines[j], lines[i])
		}
		i = j
	}
	ids := map[string]int{}
	for _, m := range regexp.MustCompile(`id="([^"]+)"`).FindAllStringSubmatch(md, -1) {
		ids[m[1]]++
	}
	for id, n := range ids {
		ExpectWithOffset(1, n).To(Equal(1), "id %s is used %d times", id, n)
	}
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(md, -1) {
		ExpectWithOffset(1, ids).To(HaveKey(m[1]), "link to #%s has no target", m[1])
	}
}

func load(dir, kind string) CRD {
	crds, err := LoadDir(dir)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	for _, c := range crds {
		if c.Def.Spec.Names.Kind == kind {
			return c
		}
	}
	Fail("no CRD of kind " + kind + " in " + dir)
	return CRD{}
}

var _ = Describe("LoadDir", func() {
	It("reads every CRD of every YAML file, sorted by kind, and ignores other objects", func() {
		crds, err := LoadDir(fixtureDir)
		Expect(err).NotTo(HaveOccurred())
		Expect(crds).To(HaveLen(2))
		Expect(crds[0].Def.Spec.Names.Kind).To(Equal("Gadget"))
		Expect(crds[0].Source).To(Equal("testdata/crds/example.com_gadgets.yaml"))
		Expect(crds[1].Def.Spec.Names.Kind).To(Equal("Widget"))
		Expect(crds[1].Def.Spec.Versions).To(HaveLen(2))
	})

	It("refuses a directory without CRDs, a CRD of another API version and two kinds with one file name", func() {
		dir := GinkgoT().TempDir()
		_, err := LoadDir(dir)
		Expect(err).To(MatchError(ContainSubstring("no CustomResourceDefinition")))

		Expect(os.WriteFile(filepath.Join(dir, "old.yaml"), []byte("apiVersion: apiextensions.k8s.io/v1beta1\nkind: CustomResourceDefinition\nmetadata: {name: x.example.com}\n"), 0o644)).To(Succeed())
		_, err = LoadDir(dir)
		Expect(err).To(MatchError(ContainSubstring("only apiextensions.k8s.io/v1 is supported")))

		dir = GinkgoT().TempDir()
		crd := "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.%s}\nspec: {group: %s, names: {kind: Widget, plural: widgets}, scope: Cluster, versions: []}\n"
		Expect(os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(strings.ReplaceAll(crd, "%s", "a.example.com")), 0o644)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(strings.ReplaceAll(crd, "%s", "b.example.com")), 0o644)).To(Succeed())
		_, err = LoadDir(dir)
		Expect(err).To(MatchError(ContainSubstring("widget.md")))
	})
})

var _ = Describe("Render, on the fixture", func() {
	var md string
	BeforeEach(func() {
		md = Render(load(fixtureDir, "Widget"))
	})

	It("starts with the kind, the generated-file marker, the description and the names", func() {
		Expect(md).To(HavePrefix("# Widget\n\n" + generatedMarker + " from testdata/crds/example.com_widgets.yaml."))
		Expect(md).To(ContainSubstring("\n\nWidget is a test fixture \\| with a pipe folded over two lines.<br><br>" +
			"A second paragraph with &lt;angle brackets&gt;, \\*stars\\* and `code | span`.\n\n"))
		Expect(md).To(ContainSubstring("- **API group:** `example.com`\n"))
		Expect(md).To(ContainSubstring("- **Versions:** `v1` (served, storage), `v1beta1` (served, deprecated)\n"))
		Expect(md).To(ContainSubstring("- **Kind:** `Widget` (list: `WidgetList`)\n"))
		Expect(md).To(ContainSubstring("- **Resource:** `widgets` (singular `widget`)\n"))
		Expect(md).To(ContainSubstring("- **Scope:** Namespaced\n"))
		Expect(md).To(ContainSubstring("- **Short names:** `wd`, `wdg`\n"))
		Expect(md).To(ContainSubstring("- **Categories:** `all`\n"))
		Expect(md).To(ContainSubstring("Subresources: `status`."))
	})

	It("lists the printer columns with their priority", func() {
		Expect(md).To(ContainSubstring("| Column | Type | JSONPath | Priority | Description |\n|---|---|---|---|---|\n" +
			"| Size | integer | `.spec.size` | 0 | how big the widget is |\n" +
			"| Ready | string | `.status.conditions[?(@.type==\"Ready\")].status` | 0 |  |\n" +
			"| Colour | string | `.spec.colour` | 1 |  |\n"))
	})

	It("gives every row path, type, required, default, validation and description", func() {
		Expect(row(md, "spec.size")).To(Equal([]string{"`spec.size`", "integer (int32)", "yes", "`3`",
			"minimum: 1<br>maximum: 10 (exclusive)", "size of the widget, in units."}))
		Expect(row(md, "spec.colour")).To(Equal([]string{"`spec.colour`", "string", "yes", "`\"green\"`",
			"enum: `red`, `green`, `blue`", "colour of the widget's housing."}))
		Expect(row(md, "spec.name")).To(Equal([]string{"`spec.name`", "string", "", "",
			"minLength: 1<br>maxLength: 63<br>pattern: `^(a\\|b)[a-z]*$`", "name printed on the widget."}))
		Expect(row(md, "spec.legacy")).To(Equal([]string{"`spec.legacy`", "boolean", "", "", "", "legacy marks widgets made before 2020."}))
		Expect(row(md, "spec.engine.settings.startedAt")).To(Equal([]string{"`spec.engine.settings.startedAt`", "string (date-time)", "", "", "", ""}))
		Expect(row(md, "metadata")).To(Equal([]string{"`metadata`", "object", "", "", "", "Standard object metadata (`ObjectMeta`)."}))
	})

	It("shows arrays with their item type and the items' constraints", func() {
		Expect(row(md, "spec.tags")).To(Equal([]string{"`spec.tags`", "array of string", "", "",
			"maxItems: 4<br>list-type: set<br>items: enum: `x`, `y`", "tags for searching."}))
		Expect(row(md, "spec.parts")).To(Equal([]string{"`spec.parts`", "array of [object](#v1-spec-parts-items)", "", "",
			"maxItems: 16<br>list-type: map, keys: `name`<br>items: see [`spec.parts[]`](#v1-spec-parts-items)", "parts the widget is assembled from."}))
		Expect(row(md, "spec.matrix")[1]).To(Equal("array of array of [object](#v1-spec-matrix-items-items)"))
	})

	It("gives arrays of objects a section of their own, with the items' description and rules", func() {
		Expect(md).To(ContainSubstring("<a id=\"v1-spec-parts-items\"></a>\n\n### `spec.parts[]`\n\nPart is one piece of a widget.\n\n" +
			"Validation rules (CEL) on the object:\n\n- only the spare part may have no count — `self.count > 0 || self.name == 'spare'`\n\n"))
		Expect(row(md, "spec.parts[].name")).To(Equal([]string{"`spec.parts[].name`", "string", "yes", "", "", "name of the part in the catalogue."}))
		Expect(row(md, "spec.parts[].count")).To(Equal([]string{"`spec.parts[].count`", "integer", "", "", "minimum: 0", "count of this part in one widget."}))
		Expect(row(md, "spec.matrix[][].value")).To(Equal([]string{"`spec.matrix[][].value`", "number", "", "", "", "value measured in the cell."}))
	})

	It("shows maps with their value type, and maps of objects with a section", func() {
		Expect(row(md, "spec.labels")).To(Equal([]string{"`spec.labels`", "map of string", "", "",
			"maxProperties: 8<br>values: maxLength: 63", "labels attached to the widget."}))
		Expect(row(md, "spec.resources")[1]).To(Equal("map of int-or-string"))
		Expect(row(md, "spec.zones")[1]).To(Equal("map of [object](#v1-spec-zones-values)"))
		Expect(md).To(ContainSubstring("### `spec.zones.<key>`"))
		Expect(row(md, "spec.zones.<key>.capacity")).To(Equal([]string{"`spec.zones.<key>.capacity`", "integer", "", "", "", "capacity of the zone in widgets per hour."}))
		Expect(row(md, "spec.extra")[1]).To(Equal("object (any fields)"))
	})

	It("links nested objects to their section and lists the object's own constraints there", func() {
		Expect(row(md, "spec.engine")).To(Equal([]string{"`spec.engine`", "[object](#v1-spec-engine)", "", "", "", "engine drives the widget."}))
		Expect(row(md, "spec.engine.kind")[2]).To(Equal("yes"))
		Expect(row(md, "spec.engine.settings")[4]).To(Equal("see [`spec.engine.settings`](#v1-spec-engine-settings)"))
		Expect(md).To(ContainSubstring("### `spec.engine.settings`\n\nsettings of the engine, tuned per site.\n\nConstraints on the object: minProperties: 1.\n\n"))
		Expect(row(md, "spec.engine.settings.mode")[3]).To(Equal("`\"auto\"`"))
	})

	It("lists the CEL rules of an object with their message, message expression, reason and field path", func() {
		Expect(md).To(ContainSubstring("### `Widget` (top level)"))
		Expect(md).To(ContainSubstring("- a Widget name has at most 20 characters — `self.metadata.name.size() <= 20`\n"))
		Expect(md).To(ContainSubstring("- legacy widgets are small — `!has(self.legacy) || self.size < 5`\n"))
		Expect(md).To(ContainSubstring("- message from `'colour is immutable, was ' + oldSelf.colour` — `self.colour == oldSelf.colour` " +
			"(on update; reason FieldValueForbidden; reported at `.colour`)\n"))
		Expect(row(md, "spec")[4]).To(Equal("see [`spec`](#v1-spec)"))
	})

	It("lists long enumerations below the table", func() {
		Expect(row(md, "spec.country")[4]).To(Equal("enum: 13 values, [listed below](#v1-spec-country-enum)"))
		Expect(md).To(ContainSubstring("<a id=\"v1-spec-country-enum\"></a>`spec.country` is one of (13): `AD`, `AE`, `AF`, `AG`, " +
			"`AI`, `AL`, `AM`, `AO`, `AQ`, `AR`, `AS`, `AT`, `AU`.\n"))
	})

	It("renders every version, with its deprecation", func() {
		v1beta1 := versionPart(md, "v1beta1")
		Expect(v1beta1).To(ContainSubstring("This version is deprecated. example.com/v1beta1 Widget is deprecated; use example.com/v1"))
		Expect(row(v1beta1, "spec.size")).To(Equal([]string{"`spec.size`", "integer", "", "", "", "size in the old version."}))
		Expect(versionPart(md, "v1")).NotTo(ContainSubstring("size in the old version"))
	})

	It("writes well-formed tables and in-page links", func() {
		expectWellFormed(md)
		expectWellFormed(Render(load(fixtureDir, "Gadget")))
	})
})

var _ = Describe("Generate", func() {
	It("writes a page per kind and the index, deterministically, and removes only stale generated pages", func() {
		out := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(out, "notes.md"), []byte("# hand-written\n"), 0o644)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(out, "oldkind.md"), []byte("# OldKind\n\n"+generatedMarker+" from x.yaml. -->\n"), 0o644)).To(Succeed())

		Expect(Generate(fixtureDir, out)).To(Succeed())
		entries, err := os.ReadDir(out)
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		Expect(names).To(ConsistOf("README.md", "gadget.md", "notes.md", "widget.md"))

		first := map[string][]byte{}
		for _, n := range []string{"README.md", "gadget.md", "widget.md"} {
			first[n], err = os.ReadFile(filepath.Join(out, n))
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(Generate(fixtureDir, out)).To(Succeed())
		for n, b := range first {
			again, err := os.ReadFile(filepath.Join(out, n))
			Expect(err).NotTo(HaveOccurred())
			Expect(again).To(Equal(b), n)
		}

		index := string(first["README.md"])
		Expect(index).To(HavePrefix("# API reference\n\n" + generatedMarker + " from the CustomResourceDefinitions in testdata/crds/."))
		Expect(index).To(ContainSubstring("| [Gadget](gadget.md) | `example.com/v1` | Cluster | none | Gadget is a small thing. |\n"))
		Expect(index).To(ContainSubstring("| [Widget](widget.md) | `example.com/v1`, `example.com/v1beta1` | Namespaced | `wd`, `wdg` | Widget is a test fixture \\| with a pipe"))
		expectWellFormed(index)
	})
})

var _ = Describe("WeakDescriptions", func() {
	It("finds empty descriptions, descriptions that only repeat the name and scaffold text", func() {
		Expect(WeakDescriptions(load(fixtureDir, "Widget"))).To(Equal([]Weak{
			{Kind: "Widget", Path: "spec", Reason: "no description"}, // in v1beta1
			{Kind: "Widget", Path: "spec.engine.settings.startedAt", Reason: "no description"},
			{Kind: "Widget", Path: "status", Reason: "scaffold text"},
			{Kind: "Widget", Path: "status.phase", Reason: "only repeats the field name"},
		}))
		Expect(WeakDescriptions(load(fixtureDir, "Gadget"))).To(BeEmpty())
	})

	DescribeTable("weakReason",
		func(name, desc, reason string) { Expect(weakReason(name, desc)).To(Equal(reason)) },
		Entry("empty", "port", "  ", "no description"),
		Entry("the name", "payloadType", "payloadType of the payload.", "only repeats the field name"),
		Entry("the name in words", "observedGeneration", "The observed generation.", "only repeats the field name"),
		Entry("a plural", "snapshot", "Snapshots.", "only repeats the field name"),
		Entry("says something", "port", "port of the server.", ""),
		Entry("scaffold", "spec", "FooSpec defines the desired state of Foo", "scaffold text"),
	)
})

// propertyPaths collects every property path of a schema, written independently of the renderer: properties
// joined with ".", array items "[]", map values ".<key>".
func propertyPaths(path string, s *apiextensionsv1.JSONSchemaProps, visit func(path string, p *apiextensionsv1.JSONSchemaProps)) {
	for name, p := range s.Properties {
		full := name
		if path != "" {
			full = path + "." + name
		}
		visit(full, &p)
		propertyPaths(full, &p, visit)
	}
	if s.Items != nil && s.Items.Schema != nil {
		propertyPaths(path+"[]", s.Items.Schema, visit)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		propertyPaths(path+".<key>", s.AdditionalProperties.Schema, visit)
	}
}

// schemas visits every schema node: properties, items and map values.
func schemas(s *apiextensionsv1.JSONSchemaProps, visit func(*apiextensionsv1.JSONSchemaProps)) {
	visit(s)
	for _, p := range s.Properties {
		schemas(&p, visit)
	}
	if s.Items != nil && s.Items.Schema != nil {
		schemas(s.Items.Schema, visit)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		schemas(s.AdditionalProperties.Schema, visit)
	}
}

var _ = Describe("Render, on the CRDs in config/crd/bases", func() {
	crds, err := LoadDir(realDir)
	It("finds the six kinds", func() {
		Expect(err).NotTo(HaveOccurred())
		var kinds []string
		for _, c := range crds {
			kinds = append(kinds, c.Def.Spec.Names.Kind)
		}
		Expect(kinds).To(ContainElements("Tenant", "RetentionPolicy", "BackupLocation", "DataExport", "DatabaseServer", "DestructionCertificate"))
	})

	for _, c := range crds {
		It("drops nothing of "+c.Def.Spec.Names.Kind+": every property path, rule, pattern and enum value is in the page", func() {
			md := Render(c)
			expectWellFormed(md)
			Expect(md).To(ContainSubstring("- **Scope:** " + string(c.Def.Spec.Scope)))
			for _, v := range c.Def.Spec.Versions {
				part := versionPart(md, v.Name)
				for _, col := range v.AdditionalPrinterColumns {
					Expect(part).To(ContainSubstring("| " + col.Name + " | " + col.Type))
				}
				root := v.Schema.OpenAPIV3Schema
				paths := 0
				propertyPaths("", root, func(path string, p *apiextensionsv1.JSONSchemaProps) {
					paths++
					cells := row(part, path)
					Expect(cells).To(HaveLen(6), "no row for %s: %s", path, v.Name)
					Expect(cells[1]).NotTo(BeEmpty(), "type of %s", path)
					if strings.TrimSpace(p.Description) != "" {
						Expect(cells[5]).NotTo(BeEmpty(), "description of %s", path)
					}
					if p.Default != nil {
						Expect(cells[3]).NotTo(BeEmpty(), "default of %s", path)
					}
				})
				Expect(paths).To(BeNumerically(">", 10))
				// One row per property, no more: every field-table row starts with a code span.
				Expect(regexp.MustCompile("(?m)^\\| `").FindAllStringIndex(part, -1)).To(HaveLen(paths))
				schemas(root, func(s *apiextensionsv1.JSONSchemaProps) {
					for _, rule := range s.XValidations {
						Expect(part).To(Or(ContainSubstring(code(fold(rule.Rule), true)), ContainSubstring(code(fold(rule.Rule), false))), "rule %q", rule.Rule)
						if rule.Message != "" {
							Expect(part).To(Or(ContainSubstring(text(rule.Message, true)), ContainSubstring(text(rule.Message, false))), "message %q", rule.Message)
						}
					}
					if s.Pattern != "" {
						Expect(part).To(ContainSubstring("pattern: "+code(s.Pattern, true)), "pattern %q", s.Pattern)
					}
					for _, e := range enumValues(s.Enum) {
						Expect(part).To(ContainSubstring(code(e, true)), "enum value %q", e)
					}
				})
			}
		})
	}

	It("indexes every kind", func() {
		index := RenderIndex(crds)
		expectWellFormed(index)
		for _, c := range crds {
			Expect(index).To(ContainSubstring("| [" + c.Def.Spec.Names.Kind + "](" + FileName(c.Def.Spec.Names.Kind) + ") |"))
		}
	})
})
