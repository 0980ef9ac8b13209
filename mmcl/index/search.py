"""Search the current champion's index: follows the registry, so a promotion or a rollback is served by the
matching index on the next query (or refused as stale when that index is missing or out of date)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from mmcl.index.query import QueryEncoder
from mmcl.index.store import Index, current_dataset, index_root, open_champion_index


class ChampionSearcher:
    """Resolves (champion, current dataset version) on every call; loads its index and model once per pair."""

    def __init__(self, store: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                 dataset_md5: str | None = None) -> None:
        from mmcl.registry_models import ModelRegistry

        self.registry, self.root, self.dataset_md5 = ModelRegistry(store), index_root(root), dataset_md5
        self._lock = threading.Lock()  # one query at a time through the model; loading is done once
        self._key: tuple[str, str | None] | None = None
        self._loaded: tuple[Index, QueryEncoder, dict[str, Any]] | None = None

    def current(self) -> tuple[Index, QueryEncoder, dict[str, Any]]:
        state = self.registry.read()
        key = (state["champion"], self.dataset_md5 or current_dataset(self.root))
        if key != self._key or self._loaded is None:
            self._loaded, self._key = None, None  # a failed load below leaves nothing half-swapped
            index, champion = open_champion_index(self.registry.root, self.root, self.dataset_md5)
            self._loaded = (index, QueryEncoder.from_file(champion["model_file"]), champion)
            self._key = key
        return self._loaded

    def search(self, modality: str, value: Any, k: int = 10, galleries: list[str] | None = None,
               upload_name: str | None = None) -> dict[str, Any]:
        """Ranked items per gallery modality; `value` is text, a file path, or bytes (with `upload_name`)."""
        with self._lock:
            index, encoder, champion = self.current()
            start = time.perf_counter()
            if isinstance(value, bytes):
                query = encoder.encode_bytes(modality, value, upload_name or "upload")
            else:
                query = encoder.encode(modality, value)
            encoded = time.perf_counter()
            results = index.search(query, k, galleries)
            done = time.perf_counter()
        return {"champion": champion["id"], "dataset_md5": index.meta["dataset_md5"], "k": k,
                "query": {"modality": modality, "value": value if isinstance(value, str) else upload_name},
                "results": results,
                "timing_ms": {"encode": 1000 * (encoded - start), "search": 1000 * (done - encoded)}}
