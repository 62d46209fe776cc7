package daemon

import (
	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
)

type v1Status = v1.Status

// statusFunc adapts a function to metrics.StatusSource.
type statusFunc func() (*v1Status, error)

func (f statusFunc) Status() (*v1Status, error) { return f() }

// objectsFunc adapts a function to metrics.ObjectsSource.
type objectsFunc func() ([]reconciler.Objects, error)

func (f objectsFunc) Objects() ([]reconciler.Objects, error) { return f() }
