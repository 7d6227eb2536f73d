"""What real DeepFlow accepts: template keys per server version, the agent's regex dialect, YAML 1.2, host names.

Pure: no host I/O and no network. Data in keytables/ was read from DeepFlow's own template.yaml and
example.yaml at each tag.
"""
