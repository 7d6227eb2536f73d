"""Renderers: data in, file text out (the agent's config, the systemd unit, the agent-group config)."""
