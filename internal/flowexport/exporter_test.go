package flowexport

import (
	"testing"

	"github.com/leaf-ebpf/leaf/internal/btflayout"
	"github.com/leaf-ebpf/leaf/packages"
)

func TestLayoutMatchesObject(t *testing.T) {
	obj, err := packages.FS.ReadFile("flowexport/flowexport.bpf.o")
	if err != nil {
		t.Fatal(err)
	}
	if err := btflayout.Check(obj, map[string]any{"flow_key": flowKey{}, "flow": flowValue{}}); err != nil {
		t.Fatal(err)
	}
}
