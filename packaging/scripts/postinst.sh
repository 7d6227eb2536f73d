#!/bin/sh
# After install or upgrade: drop unpacked copies of earlier versions (the single file unpacks itself
# into /var/cache/hostagent/<sha256> at its first start). The agent is not installed here.
# deb: $1 is configure (abort-* after a failed or refused remove/upgrade: nothing to do); rpm: $1 >= 1.
set -e
case "$1" in
    abort-*) exit 0 ;;
esac
rm -rf /var/cache/hostagent
exit 0
