// Package netnsutil runs code inside another network namespace.
package netnsutil

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread switched into the network namespace at path
// ("" runs fn in the current namespace). The thread is discarded if it
// cannot be switched back, so no other goroutine ever runs in the wrong
// namespace.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		// Otherwise the goroutine exits locked and Go ends the thread.
		errc <- ferr
	}()
	return <-errc
}

// Handle returns a route netlink handle (links, qdiscs, filters) for the
// namespace at path ("" for the current one). Only the route family:
// netlink's default opens an XFRM and a netfilter socket too, each one
// more trip into the namespace, and leaf uses neither.
func Handle(path string) (*netlink.Handle, error) {
	if path == "" {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}

// Ifindex returns the index of the interface named ifname in the namespace
// at path.
func Ifindex(path, ifname string) (int, error) {
	idx, _, err := Interface(path, ifname)
	return idx, err
}

// Interface returns the index and the main name of the interface named
// ifname — its main name or one of its altnames, which the kernel looks
// up alike — in the namespace at path.
func Interface(path, ifname string) (int, string, error) {
	var ifs Interfaces
	defer ifs.Close()
	return ifs.Lookup(path, ifname)
}

// Interfaces looks interfaces up as Interface does, keeping one netlink
// handle per network namespace until Close: resolving a document whose
// attachments name 50 interfaces of one namespace enters it once, not 50
// times. The zero value is ready; it is not safe for concurrent use.
type Interfaces struct {
	handles map[string]*netlink.Handle
}

// Lookup returns the index and main name of ifname in the namespace at
// path.
func (c *Interfaces) Lookup(path, ifname string) (int, string, error) {
	h := c.handles[path]
	if h == nil {
		var err error
		if h, err = Handle(path); err != nil {
			return 0, "", err
		}
		if c.handles == nil {
			c.handles = map[string]*netlink.Handle{}
		}
		c.handles[path] = h
	}
	l, err := h.LinkByName(ifname)
	if err != nil {
		where := "leafd's network namespace"
		if path != "" {
			where = "network namespace " + path
		}
		return 0, "", fmt.Errorf("interface %q not found in %s", ifname, where)
	}
	return l.Attrs().Index, l.Attrs().Name, nil
}

// Close closes the handles.
func (c *Interfaces) Close() {
	for _, h := range c.handles {
		h.Close()
	}
	c.handles = nil
}
