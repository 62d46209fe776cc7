package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/leaf-ebpf/leaf/internal/config"
	"github.com/leaf-ebpf/leaf/internal/kube/agent"
	"github.com/leaf-ebpf/leaf/internal/kube/controller"
)

// ManagedByKubernetes is what the API says owns the desired state in
// Kubernetes mode.
const ManagedByKubernetes = "Kubernetes"

// startKubernetes starts the Kubernetes agent when configured: it applies
// the policies selecting this host through host (the reconciler, as PUT
// /v1/state does) until ctx ends.
func startKubernetes(ctx context.Context, cfg *config.KubernetesConfig, host agent.Host, log *slog.Logger) (<-chan struct{}, error) {
	done := make(chan struct{})
	if cfg == nil {
		close(done)
		return done, nil
	}
	rc, err := agent.RestConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	node := cfg.NodeName
	if node == "" {
		node = os.Getenv("NODE_NAME")
	}
	if node == "" {
		if node, err = os.Hostname(); err != nil {
			return nil, err
		}
	}
	a, err := agent.New(agent.Config{Rest: rc, Node: node, External: len(cfg.Labels) > 0, Labels: cfg.Labels,
		DefaultNetns: cfg.DefaultNetns, Host: host, Logger: log})
	if err != nil {
		return nil, err
	}
	go func() { defer close(done); a.Run(ctx) }()
	return done, nil
}

// RunController runs the rollout controller until ctx ends (leafd
// --controller). It touches no BPF and serves no local API.
func RunController(ctx context.Context, cfg *config.KubernetesConfig, log *slog.Logger) error {
	rc, err := agent.RestConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	c, err := controller.New(controller.Config{Rest: rc, Namespace: cfg.ControllerNamespace,
		Identity: fmt.Sprintf("%s-%d", host, os.Getpid()), Logger: log})
	if err != nil {
		return err
	}
	log.Info("leafd controller starting", "namespace", cfg.ControllerNamespace)
	return c.Run(ctx)
}
