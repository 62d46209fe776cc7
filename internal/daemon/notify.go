package daemon

import (
	"context"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// leafd under systemd (Type=notify): READY=1 once the first
// reconciliation has put the kernel in the declared state, so units
// ordered after leafd start with the programs in place; WATCHDOG=1 while
// the reconciler answers, so a hung leafd is restarted; STOPPING=1 on the
// way out. Without $NOTIFY_SOCKET every call is a no-op.

func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("systemd notify failed", "state", state, "error", err)
	}
}

// watchdog pings systemd at half of WatchdogSec as long as alive succeeds
// (it takes the reconciler's lock, so a stuck apply or drift repair stops
// the pings). It returns when ctx ends or no watchdog is configured.
func watchdog(ctx context.Context, alive func() error, log *slog.Logger) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings unreadable", "error", err)
		return
	}
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := alive(); err != nil {
				log.Warn("not pinging the systemd watchdog: reconciler does not answer", "error", err)
				continue
			}
			notify(log, sd.SdNotifyWatchdog)
		}
	}
}
