#!/bin/sh
# Before the package is removed: refuse while hostagent has an agent or k8s-sync installed, so neither
# service nor its manifest is orphaned (both run this file). Upgrades pass. deb: $1 is remove|upgrade|...; rpm: $1 is 0 on erase.
case "$1" in
    remove | 0) ;;
    *) exit 0 ;;
esac
if [ -e /var/lib/hostagent/manifest.json ]; then
    echo "hostagent: an agent is installed (/var/lib/hostagent/manifest.json records it)." >&2
    echo "hostagent: run 'hostagent uninstall' first, then remove the package; nothing was removed." >&2
    exit 1
fi
if [ -e /var/lib/hostagent/k8s-sync.json ]; then
    echo "hostagent: k8s-sync is installed (/var/lib/hostagent/k8s-sync.json records it)." >&2
    echo "hostagent: run 'hostagent k8s-sync uninstall' first, then remove the package; nothing was removed." >&2
    exit 1
fi
exit 0
