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
	return doIn(target, path, fn)
}

// doIn runs fn on an OS thread switched into target (the namespace at
// path), then back into leafd's own namespace; a thread that cannot be
// switched back exits with its goroutine.
func doIn(target netns.NsHandle, path string, fn func() error) error {
	self, err := ownNetns()
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(self); err == nil {
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
// handle per network namespace until Close, each link it was asked for,
// and, once asked for a second interface in a namespace, one dump of the
// namespace's links that answers the rest: resolving a document whose
// attachments name 50 interfaces of one namespace enters it once and asks
// the kernel three times, not 50. The zero value is ready; it is not safe
// for concurrent use.
type Interfaces struct {
	handles map[string]*netlink.Handle
	// links indexes, per namespace, the links seen by name and altname;
	// dumped marks the namespaces whose every link is in it.
	links  map[string]map[string]netlink.Link
	dumped map[string]bool
	// nsfds are the namespaces the handles were opened in.
	nsfds []netns.NsHandle
}

// Handle returns the kept route netlink handle of the namespace at path,
// opening it on first use. The caller must not close it.
//
// Everything it opens stays open until Close, the namespace's descriptor
// included: closing a socket or a namespace file leaves work for the
// kernel's next RCU grace period, which an XDP or TCX attach right after
// would wait out on top of its own (bpffs.Dirs), so leafd closes them
// once its apply has attached.
func (c *Interfaces) Handle(path string) (*netlink.Handle, error) {
	if h := c.handles[path]; h != nil {
		return h, nil
	}
	var h *netlink.Handle
	var err error
	if path == "" {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		h, err = c.handleIn(path)
	}
	if err != nil {
		return nil, err
	}
	if c.handles == nil {
		c.handles = map[string]*netlink.Handle{}
	}
	c.handles[path] = h
	return h, nil
}

// handleIn opens a route netlink socket inside the namespace at path,
// keeping the namespace's descriptor until Close.
func (c *Interfaces) handleIn(path string) (*netlink.Handle, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	c.nsfds = append(c.nsfds, target)
	var h *netlink.Handle
	err = doIn(target, path, func() (err error) {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	return h, err
}

// selfNS is leafd's own network namespace, opened before main runs and
// so before any goroutine switches a thread elsewhere; kept for the
// process's life.
var selfNS, selfErr = netns.Get()

// ownNetns returns selfNS.
func ownNetns() (netns.NsHandle, error) {
	if selfErr != nil {
		return netns.None(), fmt.Errorf("open leafd's own netns: %w", selfErr)
	}
	return selfNS, nil
}

// Lookup returns the index and main name of ifname in the namespace at
// path.
func (c *Interfaces) Lookup(path, ifname string) (int, string, error) {
	l, err := c.Link(path, ifname)
	if err != nil {
		return 0, "", err
	}
	return l.Attrs().Index, l.Attrs().Name, nil
}

// Link returns the link named ifname (or with that altname) in the
// namespace at path, as the kernel described it in this lookup's time.
func (c *Interfaces) Link(path, ifname string) (netlink.Link, error) {
	if l := c.links[path][ifname]; l != nil {
		return l, nil
	}
	h, err := c.Handle(path)
	if err != nil {
		return nil, err
	}
	if len(c.links[path]) > 0 && !c.dumped[path] {
		c.dump(path, h)
		if l := c.links[path][ifname]; l != nil {
			return l, nil
		}
	}
	// A name the dump lacks is asked for: it may have appeared since,
	// and the kernel's answer is the last word.
	l, err := h.LinkByName(ifname)
	if err != nil {
		where := "leafd's network namespace"
		if path != "" {
			where = "network namespace " + path
		}
		return nil, fmt.Errorf("interface %q not found in %s", ifname, where)
	}
	c.keep(path, l)
	return l, nil
}

// dump indexes every link of the namespace (a failed dump leaves the
// lookups to LinkByName).
func (c *Interfaces) dump(path string, h *netlink.Handle) {
	if c.dumped == nil {
		c.dumped = map[string]bool{}
	}
	// Asked once either way: after a failed dump, LinkByName answers.
	c.dumped[path] = true
	links, err := h.LinkList()
	if err != nil {
		return
	}
	for _, l := range links {
		c.keep(path, l)
	}
}

// keep indexes l by its name and altnames (names come first: the kernel
// lets no altname shadow another interface's name).
func (c *Interfaces) keep(path string, l netlink.Link) {
	if c.links == nil {
		c.links = map[string]map[string]netlink.Link{}
	}
	idx := c.links[path]
	if idx == nil {
		idx = map[string]netlink.Link{}
		c.links[path] = idx
	}
	idx[l.Attrs().Name] = l
	for _, alt := range l.Attrs().AltNames {
		if _, taken := idx[alt]; !taken {
			idx[alt] = l
		}
	}
}

// Close closes the handles.
func (c *Interfaces) Close() {
	for _, h := range c.handles {
		h.Close()
	}
	for _, ns := range c.nsfds {
		ns.Close()
	}
	c.handles, c.links, c.dumped, c.nsfds = nil, nil, nil, nil
}
