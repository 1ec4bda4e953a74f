"""autotune: benchmark-and-tuning autopilot for vLLM serving of vision-language models."""

__version__ = "0.1.0"

# The distribution's name (pyproject.toml): "autotune" on the package index is an unrelated project. The import
# package and the `autotune` command keep the short name.
DISTRIBUTION = "vllm-autotune"


def install_hint(extra: str) -> str:
    """How to install an extra, as every "not installed" message says it: the path install the README uses."""
    return f"pip install -e '.[{extra}]' in the autotune checkout ({DISTRIBUTION} with its {extra} extra)"


GPU_INSTALL_HINT = install_hint("gpu") + ": vLLM 0.24.0"
