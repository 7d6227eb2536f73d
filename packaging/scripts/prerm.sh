#!/bin/sh
# Before the package goes, while hostagent has an agent or k8s-sync installed: their units run
# /usr/sbin/hostagent at every start, so removing the file breaks their next start. An admin at a
# terminal is refused (run `hostagent uninstall` / `hostagent k8s-sync uninstall` first); a
# non-interactive removal (apt in a script, a dist-upgrade, config management, dnf-automatic) is never
# failed, because a failing prerm aborts the whole apt or dnf run halfway: it goes on, leaves the
# services and their manifests as they are, and says how to finish. Why: packaging/README.md,
# "Removing the package".
# deb: $1 is remove (then maybe in-favour PKG VER), upgrade, deconfigure, failed-upgrade; rpm: $1 is
# 0 on erase, 1 on upgrade.
set -e
case "$1" in
    remove | 0) ;;
    *) exit 0 ;;
esac
# A package that replaces hostagent (remove in-favour) takes /usr/sbin/hostagent over.
[ "${2:-}" != in-favour ] || exit 0
interactive=no
if [ -t 0 ] && [ "${DEBIAN_FRONTEND:-}" != noninteractive ]; then
    interactive=yes
fi
refuse=no
check() {  # record, what it records, how to undo it
    [ -e "$1" ] || return 0
    if [ "$interactive" = yes ]; then
        echo "hostagent: $2 is installed ($1 records it); run '$3' first." >&2
        refuse=yes
    else
        echo "hostagent: warning: $2 is installed ($1 records it); it keeps running, but its" >&2
        echo "hostagent: warning: next start needs /usr/sbin/hostagent. Install the package again to keep it," >&2
        echo "hostagent: warning: or install it again and run '$3' to remove it." >&2
    fi
}
check /var/lib/hostagent/manifest.json "an agent" "hostagent uninstall"
check /var/lib/hostagent/k8s-sync.json "k8s-sync" "hostagent k8s-sync uninstall"
if [ "$refuse" = yes ]; then
    echo "hostagent: then remove the package; nothing was removed." >&2
    exit 1
fi
exit 0
