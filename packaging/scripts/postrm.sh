#!/bin/sh
# After removal (not upgrade): remove the single file's unpacked copy.
# deb: $1 is remove|purge|upgrade|...; rpm: $1 is 0 on erase, 1 on upgrade.
set -e
case "$1" in
    remove | purge | 0) rm -rf /var/cache/hostagent ;;
esac
exit 0
