"""hal0-bridge: owns one GPU and hands it between LLM slots and ComfyUI."""

__version__ = "0.1.0"

# The REST API's version for clients (the Home Assistant integration checks it): raised when a route or
# field clients rely on is added or changes. 1: wave 1; 2: /api/info hostname, api_version,
# mqtt.discovery and POST /api/mqtt/discovery.
API_VERSION = 2
