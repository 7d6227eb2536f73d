"""NIC layout detection: netlink dumps, namespaces, CNI config, classification."""
