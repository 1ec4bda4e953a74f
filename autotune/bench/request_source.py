"""The requests one benchmark run sends: rendered once (cached on disk) and never repeated on the server.

A request sent twice to one server is a prefix-cache and multimodal-cache hit, which makes the server look
faster than real traffic would. Synthetic and trace workloads render a distinct request for every index (each
seed owns its own block, see prepare.py) and keep the rendered bodies on disk (body_cache.py). A dataset has only
its lines: a run that would send one of them a second time is refused (`DatasetTooSmallError`, with the
count it needs and the count the dataset has) before that window sends anything, unless

- the caches are reset before every measured window (`LoadSpec.reset_caches`): then only each window (and
  each warm-up) must fit in the dataset, or
- the dataset declares that its lines may repeat (`dataset.allow_repeats`).
"""

from __future__ import annotations

from autotune.bench.body_cache import BodyCache, workload_key
from autotune.bench.client import PreparedRequest
from autotune.bench.prepare import REQUESTS_PER_SEED, make_renderer
from autotune.bench.workload import Workload
from autotune.errors import ConfigError


class DatasetTooSmallError(ConfigError):
    """A dataset workload has fewer lines than a run must send without repeating one."""


class RequestSource:
    def __init__(self, workload: Workload, model_name: str, *, reset_between_windows: bool = False) -> None:
        self.workload = workload
        self.model_name = model_name
        self.reset_between_windows = reset_between_windows
        renderer = make_renderer(workload)
        self.dataset_lines = renderer.lines

        def render_range(first: int, count: int) -> list[PreparedRequest]:
            return [renderer.render(index, model_name) for index in range(first, first + count)]

        self._render_range = render_range
        self._cache = (
            BodyCache(
                workload_key(workload, model_name), render_range, parallel=(workload.model_dump_json(), model_name)
            )
            if workload.dataset is None
            else None
        )

    @property
    def rendered_requests(self) -> int:
        """Synthetic requests rendered by this run (0 when every body came from the disk cache)."""
        return self._cache.rendered_requests if self._cache is not None else 0

    def take(self, first: int, count: int, *, what: str = "window") -> list[PreparedRequest]:
        """Requests `first .. first + count - 1`; `what` names them in a refusal ("window", "warm-up")."""
        if count <= 0:
            return []
        self._check_dataset(first, count, what)
        if self._cache is not None:
            return self._cache.take(first, count)
        return self._render_range(first, count)

    def sample(self, first: int, count: int) -> list[PreparedRequest]:
        """Requests `first ..` to look at (their sizes), not to send: no budget is spent or checked."""
        if self._cache is not None:
            return self._cache.take(first, count)
        return self._render_range(first, count)

    def _check_dataset(self, first: int, count: int, what: str) -> None:
        lines = self.dataset_lines
        dataset = self.workload.dataset
        if lines is None or dataset is None or dataset.allow_repeats:
            return
        offset = first % REQUESTS_PER_SEED  # requests of this seed prepared before this take
        if self.reset_between_windows:
            if count > lines:
                raise DatasetTooSmallError(
                    f"dataset.path {dataset.path}: the {what} needs {count} distinct requests but the dataset has "
                    f"{lines} lines (the caches are reset between windows, so each window must fit on its own). "
                    "Use a larger dataset, a shorter or slower window, or dataset.allow_repeats: true to accept repeats."
                )
            return
        needed = offset + count
        if needed > lines:
            raise DatasetTooSmallError(
                f"dataset.path {dataset.path}: this run needs at least {needed} distinct requests ({offset} already "
                f"prepared + {count} for the next {what}) but the dataset has {lines} lines, and a line sent twice to "
                "one server is a prefix- and multimodal-cache hit. Use a larger dataset, fewer or shorter windows, "
                "reset_caches: true (the server must offer POST /reset_prefix_cache and /reset_mm_cache: vLLM with "
                "VLLM_SERVER_DEV_MODE=1), or dataset.allow_repeats: true to accept repeats."
            )
