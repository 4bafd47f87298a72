"""Slots and their backends (systemd units, the bridge's own processes)."""
