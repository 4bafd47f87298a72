"""GPU arbitration: the arbiter and its persisted state, idle-restore, the slots and their backends,
memory gauges, and the gate the image path passes through."""
