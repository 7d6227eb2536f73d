#!/bin/sh
# After install or upgrade: drop unpacked copies of earlier versions (the single file unpacks itself
# into /var/cache/hostagent/<sha256> at its first start). The agent is not installed here.
rm -rf /var/cache/hostagent
exit 0
