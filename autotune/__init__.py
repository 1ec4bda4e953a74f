"""autotune: benchmark-and-tuning autopilot for vLLM serving of vision-language models."""

__version__ = "0.1.0"
