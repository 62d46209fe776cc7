package hook

import "golang.org/x/sys/unix"

var errBusy error = unix.EBUSY
