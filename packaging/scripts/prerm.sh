#!/bin/sh
# Stop and disable leafd before its files go. The programs it attached
# stay in the kernel (pinned): `leaf delete` them first to remove them.
set -e
case "$1" in
remove|0)
	if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
		systemctl disable --now leafd.service || true
	fi
	;;
esac
exit 0
