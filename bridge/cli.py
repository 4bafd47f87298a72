"""``hal0-bridge``: run the daemon, or print the effective configuration."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from . import __version__, preflight
from .config import ENV_CONFIG, ConfigError, load


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hal0-bridge",
        description="Owns one GPU: hands it between LLM slots and ComfyUI; REST, OpenAI images, MQTT.",
    )
    parser.add_argument(
        "--config", metavar="FILE", help=f"TOML config file (default: ${ENV_CONFIG}, else built-in defaults)"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the effective configuration as JSON (secrets redacted) and exit"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--version", action="version", version=f"hal0-bridge {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # before load(): unknown config keys are logged as warnings while it parses
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load(args.config)
        preflight.check(config)  # what start-up checks, --print-config checks too
        if args.print_config:
            json.dump(config.to_dict(), sys.stdout, indent=2, sort_keys=True)
            sys.stdout.write("\n")
            return 0
        from .app import serve  # imported late: --print-config needs no aiohttp

        asyncio.run(serve(config))
    except ConfigError as err:
        print(f"hal0-bridge: configuration error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
