"""The LLM proxy: the bridge as the box's one OpenAI base URL for chat, completions and embeddings."""
