package e2e

import (
	"testing"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestMain fails the run if the tests leak file descriptors or goroutines.
func TestMain(m *testing.M) { testenv.Main(m) }
