"""hal0-bridge: owns one GPU and hands it between LLM slots and ComfyUI."""

__version__ = "0.1.0"
