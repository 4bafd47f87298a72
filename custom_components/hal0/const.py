"""Constants for the hal0 integration.

The integration has no user-tunable timeouts; these are the named values every I/O path uses, kept in
one place so none are sprinkled through the code.
"""

from __future__ import annotations

from datetime import timedelta
import logging
from typing import Final

DOMAIN: Final = "hal0"
LOGGER = logging.getLogger(__package__)

DEFAULT_PORT: Final = 8080

# Polling is the fallback while the /api/events stream is down; with the stream up nothing polls.
POLL_INTERVAL: Final = timedelta(seconds=10)
# Short REST calls (status, info, switchover, pin, cancel).
REQUEST_TIMEOUT: Final = 10.0
# Opening the event stream; reading it may pause as long as the bridge sends no `: ping`.
STREAM_CONNECT_TIMEOUT: Final = 10.0
STREAM_READ_TIMEOUT: Final = 90.0
# A stream that ends sooner than this (seconds) after it opened counts as failed: the next try
# waits one poll, then two, four, ... up to STREAM_BACKOFF_MAX_POLLS (32 polls = 5 min 20 s);
# polling keeps the entities fresh meanwhile.
STREAM_STABLE_AFTER: Final = 60.0
STREAM_BACKOFF_MAX_POLLS: Final = 32
# An image request may first switch the GPU to generation, then render (bridge render_timeout 300 s).
GENERATE_TIMEOUT: Final = 900.0

MODES: Final = ("inference", "generation")
ENGINE_STATES: Final = ("generating", "running", "starting", "stopped")
CONTAINER_STATES: Final = ("running", "exited", "absent")

# service actions
SERVICE_SWITCHOVER: Final = "switchover"
SERVICE_GENERATE_IMAGE: Final = "generate_image"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_MODE: Final = "mode"
ATTR_FORCE: Final = "force"
ATTR_PIN: Final = "pin"
ATTR_PROMPT: Final = "prompt"
ATTR_MODEL: Final = "model"
ATTR_SIZE: Final = "size"
ATTR_N: Final = "n"
ATTR_SEED: Final = "seed"
ATTR_STEPS: Final = "steps"
ATTR_CFG: Final = "cfg"
ATTR_NEGATIVE_PROMPT: Final = "negative_prompt"
ATTR_IMAGE: Final = "image"
ATTR_STRENGTH: Final = "strength"

# The largest picture an action or AI task reads to send for an edit (the bridge has its own limit).
MAX_IMAGE_BYTES: Final = 64 * 1024 * 1024

# Home Assistant bus event fired for every bridge event (switch_started, image_generated, ...).
EVENT_HAL0: Final = "hal0_event"

# The bridge API versions this integration speaks (GET /api/info "api_version"; absent = 1).
# Older: setup waits for an updated bridge; newer: works, with a repair issue to update the integration.
MIN_API_VERSION: Final = 1
MAX_API_VERSION: Final = 2
# POST /api/mqtt/discovery exists from this API version on (the repair's one-click fix uses it)
MQTT_DISCOVERY_API_VERSION: Final = 2

# Discovery: the bridge's retained info topic (manifest "mqtt") and its mDNS service (manifest "zeroconf")
MQTT_INFO_TOPIC: Final = "hal0/bridge/info"
ZEROCONF_TYPE: Final = "_hal0-bridge._tcp.local."

# Options: defaults for ai_task and hal0.generate_image (unset = the bridge's own default)
CONF_MODEL: Final = "model"
CONF_SIZE: Final = "size"
CONF_STEPS: Final = "steps"
CONF_NEGATIVE_PROMPT: Final = "negative_prompt"

# Repair issues
ISSUE_API_TOO_OLD: Final = "api_too_old"
ISSUE_API_TOO_NEW: Final = "api_too_new"
ISSUE_IDLE_RESTORE_FAILING: Final = "idle_restore_failing"
ISSUE_MQTT_DISCOVERY_ON: Final = "mqtt_discovery_on"
# idle-restore switches that failed in a row before the repair issue is raised
IDLE_RESTORE_FAILURES_FOR_ISSUE: Final = 2
