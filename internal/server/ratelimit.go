package server

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/leaf-ebpf/leaf/internal/auth"
)

// RateLimiter is a token bucket per caller (uid, certificate subject or
// token ID) for mutating calls and expensive reads (package listings, map
// dumps): one client applying or listing in a loop cannot starve the
// others or keep the kernel busy reloading programs.
type RateLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*limiterEntry
}

type limiterEntry struct {
	lim      *rate.Limiter
	lastSeen time.Time
}

// maxLimiters bounds the memory the limiter uses; idle entries are
// dropped first.
const maxLimiters = 4096

// NewRateLimiter allows perSecond mutating calls per caller on average,
// with bursts of burst.
func NewRateLimiter(perSecond float64, burst int) *RateLimiter {
	return &RateLimiter{limit: rate.Limit(perSecond), burst: burst, clients: map[string]*limiterEntry{}}
}

// Wait returns 0 if the caller may go now (spending one token), or how
// long it should wait before trying again (spending nothing).
func (l *RateLimiter) Wait(key string) time.Duration {
	now := time.Now()
	l.mu.Lock()
	e, ok := l.clients[key]
	if !ok {
		l.pruneLocked(now)
		e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.clients[key] = e
	}
	e.lastSeen = now
	l.mu.Unlock()
	res := e.lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

func (l *RateLimiter) pruneLocked(now time.Time) {
	if len(l.clients) < maxLimiters {
		return
	}
	for k, e := range l.clients {
		// A bucket idle this long is full again: forgetting it loses
		// nothing.
		if now.Sub(e.lastSeen) > time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second))+time.Minute {
			delete(l.clients, k)
		}
	}
	for k := range l.clients {
		if len(l.clients) < maxLimiters {
			break
		}
		delete(l.clients, k)
	}
}

func retryAfter(d time.Duration) string {
	return fmt.Sprint(int(math.Ceil(d.Seconds())))
}

func errTooMany(id auth.Identity, wait time.Duration) error {
	return fmt.Errorf("rate limit: too many changes or expensive reads from %s %s; retry in %s", id.Via, id.Subject, wait.Round(time.Millisecond))
}
