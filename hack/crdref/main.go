// Command crdref writes the API reference in docs/reference from the CustomResourceDefinitions in
// config/crd/bases: one Markdown page per kind (group and version, scope, short names, printer columns, and a table
// per object level with each field's type, default, validation and description) and an index, README.md. The
// output depends only on the CRDs, so `make verify-gen` can check it for drift. `make manifests` runs it after
// controller-gen.
//
//	go run ./hack/crdref -in config/crd/bases -out docs/reference
//	go run ./hack/crdref -in config/crd/bases -weak   # list fields with an empty or unhelpful description
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	in := flag.String("in", "config/crd/bases", "directory of CustomResourceDefinition YAML files")
	out := flag.String("out", "docs/reference", "directory the Markdown is written to")
	weak := flag.Bool("weak", false, "instead of writing the reference, list the fields whose description is empty or only repeats the field's name")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "crdref: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	if *weak {
		crds, err := LoadDir(*in)
		if err != nil {
			fmt.Fprintln(os.Stderr, "crdref:", err)
			os.Exit(1)
		}
		for _, c := range crds {
			for _, w := range WeakDescriptions(c) {
				fmt.Println(w)
			}
		}
		return
	}
	if err := Generate(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "crdref:", err)
		os.Exit(1)
	}
}
