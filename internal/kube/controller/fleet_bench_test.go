package controller

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	kv1 "github.com/leaf-ebpf/leaf/api/kube/v1alpha1"
	"github.com/leaf-ebpf/leaf/internal/kube/agent"
	"github.com/leaf-ebpf/leaf/internal/kube/kubetest"
)

var fleetSize = flag.Int("fleet.agents", 1000, "agents in BenchmarkFleet")

// BenchmarkFleet is the scale run (docs/kubernetes.md): N agents — the
// real Kubernetes-facing agent, each with its own client certificate,
// informers and LeafNode, the kernel replaced by a Recorder — against one
// API server. It reports the time for a policy change to reach every
// agent (and every LeafNode to say so), API requests per second at steady
// state and while the change spreads, the same for a staged rollout
// driven by the controller, and the API server's memory.
//
//	go test -run '^$' -bench Fleet -benchtime 1x ./internal/kube/controller/ -fleet.agents 1000
func BenchmarkFleet(b *testing.B) {
	c := kubetest.Start(b)
	c.Apply(b, kubetest.LeafManifests(deployDir)...)
	k, d := kubetest.Clients(b, c.Admin)
	ctx := context.Background()
	n := *fleetSize
	recs := make([]*agent.Recorder, n)
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("node-%04d", i)
		if _, err := k.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"role": "edge"}}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		recs[i] = &agent.Recorder{}
		rc := c.Config(b, "leaf:node:"+name, "leaf:agents")
		rc.QPS, rc.Burst = 5, 10 // client-go's defaults, as a real agent
		a, err := agent.New(agent.Config{Rest: rc, Node: name, Host: recs[i], StatusInterval: 30 * time.Second,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		actx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); a.Run(actx) }()
		b.Cleanup(func() { cancel(); <-done })
	}
	waitFleet(b, time.Second, func() bool { return readyLeafNodes(b, c) == n }, 10*time.Minute)
	b.Logf("%d agents registered and Ready in %v", n, time.Since(start).Round(time.Millisecond))

	steady := requestRate(b, c, 20*time.Second)
	b.Logf("steady state: %.1f API requests/s", steady)

	before := requestCount(b, c)
	changeStart := time.Now()
	kubetest.Create(b, d, kv1.PolicyResource, `
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: fleet}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  attachments:
  - {name: filter, package: portfilter@1.0.0, hook: {type: xdp, interface: eth0}, params: {ports: [7001]}}
`)
	waitFleet(b, 100*time.Millisecond, func() bool {
		for _, r := range recs {
			if st, _ := r.State(); st == nil || len(st.Spec.Attachments) != 1 {
				return false
			}
		}
		return true
	}, 10*time.Minute)
	reach := time.Since(changeStart)
	waitFleet(b, time.Second, func() bool { return reportingLeafNodes(b, c, 1) == n }, 10*time.Minute)
	reported := time.Since(changeStart)
	during := float64(requestCount(b, c)-before) / reported.Seconds()
	b.Logf("policy change reached %d agents in %v; every LeafNode reported it after %v; %.1f API requests/s meanwhile", n, reach.Round(time.Millisecond), reported.Round(time.Millisecond), during)

	// A staged rollout of a second policy: 1% canaries, then batches of
	// 25%, 1 s soak each, driven by the controller.
	ctrl, err := New(Config{Rest: c.Config(b, "leaf:controller", "leaf:controllers"), Identity: "bench",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: 500 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	run(b, ctrl)
	before = requestCount(b, c)
	rolloutStart := time.Now()
	kubetest.Create(b, d, kv1.PolicyResource, fmt.Sprintf(`
apiVersion: leaf.dev/v1alpha1
kind: LeafPolicy
metadata: {name: staged}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  rollout: {canary: %d, batchSize: %d, soakSeconds: 1, timeoutSeconds: 600}
  attachments:
  - {name: count, package: pktcount@1.0.0, priority: 10, hook: {type: xdp, interface: eth0}}
`, max(1, n/100), max(1, n/4)))
	waitFleet(b, 100*time.Millisecond, func() bool {
		for _, r := range recs {
			if st, _ := r.State(); st == nil || len(st.Spec.Attachments) != 2 {
				return false
			}
		}
		return true
	}, 20*time.Minute)
	rollout := time.Since(rolloutStart)
	duringRollout := float64(requestCount(b, c)-before) / rollout.Seconds()
	b.Logf("staged rollout (canary %d, batches of %d, 1 s soak) reached %d agents in %v; %.1f API requests/s meanwhile", max(1, n/100), max(1, n/4), n, rollout.Round(time.Millisecond), duringRollout)
	rss, hwm := memory(b, c.PID())
	b.Logf("kube-apiserver memory: %d MiB resident, %d MiB peak", rss>>20, hwm>>20)
	b.ReportMetric(reach.Seconds(), "s-to-reach-all")
	b.ReportMetric(reported.Seconds(), "s-all-reported")
	b.ReportMetric(steady, "req/s-steady")
	b.ReportMetric(during, "req/s-change")
	b.ReportMetric(rollout.Seconds(), "s-rollout")
	b.ReportMetric(duringRollout, "req/s-rollout")
	b.ReportMetric(float64(hwm>>20), "MiB-apiserver-peak")
	for range b.N {
	}
}

// waitFleet polls cond every interval until it holds.
func waitFleet(b testing.TB, interval time.Duration, cond func() bool, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("fleet did not get there within %v", timeout)
		}
		time.Sleep(interval)
	}
}

// readyLeafNodes counts LeafNodes whose Ready condition is True.
func readyLeafNodes(b testing.TB, c *kubetest.Cluster) int {
	return countLeafNodes(b, c, func(n *kv1.LeafNode) bool { return condition(n, kv1.ConditionReady) == metav1.ConditionTrue })
}

// reportingLeafNodes counts LeafNodes reporting attachments attachments.
func reportingLeafNodes(b testing.TB, c *kubetest.Cluster, attachments int32) int {
	return countLeafNodes(b, c, func(n *kv1.LeafNode) bool { return n.Status.AttachmentCount == attachments })
}

// ownRequests counts the LIST requests the bench itself makes, which the
// request rates leave out.
var ownRequests atomic.Int64

func countLeafNodes(b testing.TB, c *kubetest.Cluster, ok func(*kv1.LeafNode) bool) int {
	ownRequests.Add(1)
	_, d := kubetest.Clients(b, c.Admin)
	list, err := d.Resource(kv1.NodeResource).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return 0
	}
	count := 0
	for i := range list.Items {
		var n kv1.LeafNode
		if agent.FromUnstructured(&list.Items[i], &n) == nil && ok(&n) {
			count++
		}
	}
	return count
}

// requestCount sums apiserver_request_total from the API server's metrics.
func requestCount(b testing.TB, c *kubetest.Cluster) float64 {
	b.Helper()
	rc := rest.CopyConfig(c.Admin)
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := hc.Get(c.Server + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sum := -float64(ownRequests.Load())
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func requestRate(b testing.TB, c *kubetest.Cluster, over time.Duration) float64 {
	before := requestCount(b, c)
	time.Sleep(over)
	// The two scrapes themselves are two of the requests.
	return (requestCount(b, c) - before - 1) / over.Seconds()
}

// memory reads a process's resident and peak resident set sizes.
func memory(b testing.TB, pid int) (rss, hwm int64) {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(sc.Text(), "VmRSS:"):
			rss = kb << 10
		case strings.HasPrefix(sc.Text(), "VmHWM:"):
			hwm = kb << 10
		}
	}
	return rss, hwm
}

func condition(n *kv1.LeafNode, typ string) metav1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}
