"""HTTP: aiohttp plumbing (:mod:`.server`) and one module per route family. Routes only parse and
answer; the rules they apply live in :mod:`hal0_bridge.commands` and the concern packages."""
