"""Every check the configuration must pass before the daemon serves, in one place.

Start-up (:class:`hal0_bridge.app.Bridge`) and ``hal0-bridge --print-config`` both run
:func:`check`, so a config that ``--print-config`` accepts is one the daemon starts with. Each
failure is a :class:`~hal0_bridge.config.ConfigError` naming the key. No aiohttp here: printing the
config must not need the web stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config, ConfigError
from .images.catalogue import Catalogue
from .images.workflows import WorkflowRenderer


@dataclass(frozen=True, slots=True)
class Checked:
    """What the checks built on the way; start-up keeps using them."""

    catalogue: Catalogue
    renderer: WorkflowRenderer


def check_security(config: Config) -> None:
    """Refuse to serve a network without a token: the API can stop LLMs and run renders."""
    server = config.server
    if not server.is_loopback and not server.token:
        raise ConfigError(
            f"server.token: required when server.host ({server.host}) is not a loopback address; "
            "set a long random token or bind to 127.0.0.1"
        )


def check(config: Config) -> Checked:
    check_security(config)
    catalogue = Catalogue.from_config(config)  # an uncurated image.default_model stops here
    renderer = WorkflowRenderer(config.image.template_dir)
    renderer.check_models(catalogue.models())  # a broken template stops here
    return Checked(catalogue, renderer)
