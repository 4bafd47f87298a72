"""Images: request parsing, the curated model catalogue, the workflow renderer, the image cache, and
the image service that runs a request through the GPU gate and ComfyUI."""
