package daemon

import v1 "github.com/leaf-ebpf/leaf/api/v1"

type v1Status = v1.Status

// statusFunc adapts a function to metrics.StatusSource.
type statusFunc func() (*v1Status, error)

func (f statusFunc) Status() (*v1Status, error) { return f() }
