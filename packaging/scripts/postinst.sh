#!/bin/sh
# After install or upgrade: drop unpacked copies of earlier versions (the single file unpacks itself
# into /var/cache/hostagent/<sha256> at its first start), except a copy a process still runs from:
# a k8s-sync service of the earlier version keeps its code until it restarts (re-run `hostagent
# k8s-sync install` to move it to this version); a later root start of hostagent removes that copy
# once unused. The agent is not installed here.
# deb: $1 is configure (abort-* after a failed or refused remove/upgrade: nothing to do); rpm: $1 >= 1.
set -e
case "$1" in
    abort-*) exit 0 ;;
esac
cache=/var/cache/hostagent
[ -d "$cache" ] || exit 0
for dir in "$cache"/* "$cache"/.[!.]*; do
    [ -e "$dir" ] || continue
    for exe in /proc/[0-9]*/exe; do
        case "$(readlink "$exe" 2>/dev/null)" in
            "$dir"/*) continue 2 ;;
        esac
    done
    rm -rf "$dir"
done
rmdir "$cache" 2>/dev/null || true
exit 0
