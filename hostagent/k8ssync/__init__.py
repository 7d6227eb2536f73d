"""`hostagent k8s-sync`: a pseudo-agent that list-watches the Kubernetes apiserver and reports the
cluster's resources to deepflow-server with the KubernetesAPISync gRPC call (DeepFlow seed §2.3).

proto.py (the wire messages, hand-encoded proto2), resources.py (what is watched, and how each object
is trimmed to what the server reads), store.py (the encoded entries and the version), watcher.py
(list-watch), reporter.py (gRPC with controller failover), runner.py (the loop that ties them)."""
