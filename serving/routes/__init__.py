"""One router per resource: chat, models, health, metrics, config, cache (vLLM's dev-mode cache resets)."""
