"""ComfyUI: the HTTP client, the websocket follower, the engine monitor, and the facade the rest of
the daemon holds (:class:`.facade.ComfyUI`)."""
