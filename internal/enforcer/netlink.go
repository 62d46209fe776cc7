package enforcer

import (
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// linkWatcher holds one netlink link subscription per network namespace.
type linkWatcher struct {
	trigger func(string)
	log     *slog.Logger
	subs    map[string]*subscription
}

type subscription struct {
	done chan struct{}
	// dead closes when the subscription ends by itself (its namespace
	// went away, a socket error); retry starts it again.
	dead chan struct{}
}

func newLinkWatcher(trigger func(string), log *slog.Logger) *linkWatcher {
	return &linkWatcher{trigger: trigger, log: log, subs: map[string]*subscription{}}
}

// set subscribes to exactly these namespaces.
func (w *linkWatcher) set(namespaces []string) {
	want := map[string]bool{}
	for _, ns := range namespaces {
		want[ns] = true
		if w.subs[ns] == nil {
			w.start(ns)
		}
	}
	for ns, s := range w.subs {
		if !want[ns] {
			if s != nil {
				close(s.done)
			}
			delete(w.subs, ns)
		}
	}
}

// retry restarts subscriptions that ended, such as one whose namespace
// was deleted and created again.
func (w *linkWatcher) retry() {
	for ns, s := range w.subs {
		if s == nil {
			w.start(ns)
			continue
		}
		select {
		case <-s.dead:
			w.start(ns)
		default:
		}
	}
}

func (w *linkWatcher) start(path string) {
	s, err := subscribe(path, w.trigger, w.log)
	if err != nil {
		w.log.Debug("netlink subscription", "netns", path, "error", err)
	}
	w.subs[path] = s // nil on error: retried by the next scan
}

func subscribe(path string, trigger func(string), log *slog.Logger) (*subscription, error) {
	var h netns.NsHandle
	var err error
	if path == "" {
		h, err = netns.Get()
	} else {
		h, err = netns.GetFromPath(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open netns: %w", err)
	}
	defer h.Close()
	ch := make(chan netlink.LinkUpdate, 64)
	s := &subscription{done: make(chan struct{}), dead: make(chan struct{})}
	err = netlink.LinkSubscribeWithOptions(ch, s.done, netlink.LinkSubscribeOptions{
		Namespace:     &h,
		ErrorCallback: func(err error) { log.Debug("netlink link events", "netns", path, "error", err) },
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	where := path
	if where == "" {
		where = "leafd's netns"
	}
	go func() {
		defer close(s.dead)
		for u := range ch {
			what := "changed"
			if u.Header.Type == unix.RTM_DELLINK {
				what = "removed"
			}
			trigger(fmt.Sprintf("link %s %s in %s", u.Attrs().Name, what, where))
		}
	}()
	return s, nil
}

func (w *linkWatcher) close() {
	for _, s := range w.subs {
		if s != nil {
			close(s.done)
		}
	}
	w.subs = nil
}
