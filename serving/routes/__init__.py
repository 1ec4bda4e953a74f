"""One router per resource: chat, models, health, metrics, config."""
