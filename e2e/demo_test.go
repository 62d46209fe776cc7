package e2e

import (
	"bufio"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestDemoEndsWithConsoleURL runs `make demo`'s script on a terminal
// (script(1) gives it a pty) with the test's binaries: it ends by printing
// the console's URL, the console answers there until Ctrl-C, and Ctrl-C
// removes the demo's namespaces.
func TestDemoEndsWithConsoleURL(t *testing.T) {
	testenv.RequireKernel(t)
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) not installed (bsdutils)")
	}
	if _, err := os.Stat(testenv.NetnsPath("leaf-demo-a")); err == nil {
		t.Skip("a demo is running on this machine (netns leaf-demo-a exists)")
	}
	cmd := exec.Command("script", "-qfec", "scripts/demo.sh", "/dev/null")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "BIN="+testenv.Binaries(t), "GORACE=atexit_sleep_ms=0")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	url := regexp.MustCompile(`^console: (http://127\.0\.0\.1:\d+/login\?token=[0-9a-f]+)`)
	var login string
	var last string
	lines := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for lines.Scan() {
		t.Log(lines.Text())
		line := strings.TrimSpace(lines.Text())
		if line != "" {
			last = line
		}
		if m := url.FindStringSubmatch(line); m != nil {
			login = m[1]
		}
		if strings.Contains(line, "Ctrl-C ends the demo") {
			break
		}
	}
	if login == "" || !strings.Contains(last, "Ctrl-C ends the demo") {
		t.Fatalf("the demo did not end with the console's URL; last line %q", last)
	}
	rest := make(chan string, 1)
	go func() { // the rest, for the log
		var b strings.Builder
		for lines.Scan() {
			b.WriteString(lines.Text() + "\n")
		}
		rest <- b.String()
	}()
	// The console answers while the demo waits.
	jar, _ := cookiejar.New(nil)
	resp, err := (&http.Client{Jar: jar, Timeout: 10 * time.Second}).Get(login)
	if err != nil {
		t.Fatalf("console at %s: %v", login, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "leaf console") {
		t.Fatalf("console at %s answered %s: %.200s", login, resp.Status, body)
	}
	// Ctrl-C on the terminal: the demo cleans up and ends.
	stdin.Write([]byte{3})
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not end after Ctrl-C")
	}
	t.Logf("after the URL:\n%s", <-rest)
	for _, ns := range []string{"leaf-demo-a", "leaf-demo-b"} {
		if _, err := os.Stat(testenv.NetnsPath(ns)); err == nil {
			t.Errorf("netns %s left behind", ns)
		}
	}
}
