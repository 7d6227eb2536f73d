#!/bin/sh
# Before the package goes, while hostagent has an agent installed: the agent's unit runs
# /usr/sbin/hostagent at every start, so removing the file breaks its next start. An admin at a
# terminal is refused (run `hostagent uninstall` first); a non-interactive removal (apt in a script,
# a dist-upgrade, config management, dnf-automatic) is never failed, because a failing prerm aborts
# the whole apt or dnf run halfway: it goes on, leaves the agent and its manifest as they are, and
# says how to finish. Why: packaging/README.md, "Removing the package".
# deb: $1 is remove (then maybe in-favour PKG VER), upgrade, deconfigure, failed-upgrade; rpm: $1 is
# 0 on erase, 1 on upgrade.
set -e
case "$1" in
    remove | 0) ;;
    *) exit 0 ;;
esac
# A package that replaces hostagent (remove in-favour) takes /usr/sbin/hostagent over.
[ "${2:-}" != in-favour ] || exit 0
[ -e /var/lib/hostagent/manifest.json ] || exit 0
if [ -t 0 ] && [ "${DEBIAN_FRONTEND:-}" != noninteractive ]; then
    echo "hostagent: an agent is installed (/var/lib/hostagent/manifest.json records it)." >&2
    echo "hostagent: run 'hostagent uninstall' first, then remove the package; nothing was removed." >&2
    exit 1
fi
echo "hostagent: warning: an agent is installed (/var/lib/hostagent/manifest.json records it); it keeps" >&2
echo "hostagent: warning: running, but its next start needs /usr/sbin/hostagent. Install the package again" >&2
echo "hostagent: warning: to keep it, or install it again and run 'hostagent uninstall' to remove the agent." >&2
exit 0
