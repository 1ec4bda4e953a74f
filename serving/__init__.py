"""Serving: an OpenAI-compatible server that loads a tuned config at startup."""
