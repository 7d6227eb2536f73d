#!/usr/bin/env bash
# The VM tier's lifecycle on Vagrant boxes, driven from the developer's machine:
#   snapshot -> hostagent install -> host suite -> reboot -> suite ->
#   binary replaced as a self-upgrade does + restart -> suite (caps back) ->
#   uninstall -> suite --state=absent against the snapshot.
# Usage (from the repo root or vagrant/): vagrant/e2e.sh [BOX...]   (default: all autostart boxes)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
cd "$here"
python="${PYTHON:-$repo/.venv/bin/python}"
boxes=("$@")
[ ${#boxes[@]} -gt 0 ] || boxes=(bookworm bullseye jammy rocky9)
# The Vagrantfile puts hostagent there (HOSTAGENT_VIA=file, the default: the single file from dist/).
if [ "${HOSTAGENT_VIA:-file}" = venv ]; then hostagent=/opt/hostagent/bin/hostagent; else hostagent=/usr/sbin/hostagent; fi

# The agent double: static, so one build serves every box.
mkdir -p .build
double="$(cd "$repo" && "$python" -m tests.fixtures.build "$here/.build")"
install -m 0755 "$double" .build/deepflow-agent

suite() {  # BOX, suite options...
    local box="$1"; shift
    (cd "$repo" && "$python" -m pytest tests/system/test_host_state.py -q -p no:cacheprovider \
        --hosts="ssh://$box" --ssh-config="$here/.build/ssh-config-$box" --sudo "$@")
}

on() {  # BOX, command run as root on it
    local box="$1"; shift
    ssh -F ".build/ssh-config-$box" "$box" sudo sh -c "'$*'"
}

for box in "${boxes[@]}"; do
    echo "=== $box"
    start=$SECONDS
    HOSTAGENT_PROVISION_INSTALL=0 vagrant up --provision "$box"
    vagrant ssh-config "$box" > ".build/ssh-config-$box"
    ssh -F ".build/ssh-config-$box" "$box" sudo python3 - < "$repo/tests/hostsnap.py" > ".build/before-$box.json"

    on "$box" "$hostagent" install --agent-binary /root/deepflow-agent \
        --controller-ip 127.0.0.1 --yes --json
    suite "$box" --state=installed

    vagrant reload "$box"
    suite "$box" --state=installed

    # A self-upgrade renames a new file over the binary: the new file has no caps.
    on "$box" "cp /root/deepflow-agent /usr/sbin/deepflow-agent.new && mv -f /usr/sbin/deepflow-agent.new /usr/sbin/deepflow-agent"
    on "$box" systemctl restart deepflow-agent
    suite "$box" --state=installed

    on "$box" "$hostagent" uninstall --yes --json
    suite "$box" --state=absent --snapshot-before="$here/.build/before-$box.json"
    echo "=== $box passed in $((SECONDS - start)) s"
done
