"""autotune: benchmark-and-tuning autopilot for vLLM serving of vision-language models."""

__version__ = "0.1.0"

# The distribution's name (pyproject.toml): "autotune" on the package index is an unrelated project. The import
# package and the `autotune` command keep the short name.
DISTRIBUTION = "vllm-autotune"
# What every "vLLM is not installed" message tells: the path install the README uses, from the checkout.
GPU_INSTALL_HINT = f"pip install -e '.[gpu]' in the autotune checkout ({DISTRIBUTION} with its gpu extra: vLLM 0.24.0)"
