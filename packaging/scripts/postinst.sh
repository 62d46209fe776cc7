#!/bin/sh
# leaf package: create the API group and leafd's directories, make the
# token signing key once, then (on a running systemd) enable and start or
# restart leafd. Works for dpkg (argument "configure") and rpm (a count),
# and in a foreign root: dpkg --root=DIR --force-script-chrootless sets
# DPKG_ROOT, which every step honours.
set -e
root="${DPKG_ROOT:-}"
case "$1" in
configure|[0-9]*)
	systemd-sysusers --root="$root/" leaf.conf
	systemd-tmpfiles --root="$root/" --create leaf.conf
	if [ ! -e "$root/etc/leaf/token.key" ]; then
		"$root/usr/bin/leaf" token keygen "$root/etc/leaf/token.key" >/dev/null
	fi
	if [ -z "$root" ] && [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		systemctl enable leafd.service
		# An upgrade restarts leafd; programs stay attached throughout.
		systemctl restart leafd.service
	fi
	;;
esac
exit 0
