"""Tiny name -> factory registries (timm style): names are the public API.

    @ENCODERS.register("efficientnet_lite0")
    class EfficientNetLite0Encoder(...): ...

    ENCODERS.build("efficientnet_lite0", **kwargs)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._factories:
            known = ", ".join(sorted(self._factories)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._factories[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def build_from_config(self, name: str, options: dict[str, Any], where: str) -> Any:
        """Build with options from a config; an unknown name or option fails naming `where` (the key)."""
        import inspect

        from mmcl.errors import ConfigError

        try:
            factory = self.get(name)
        except KeyError as exc:
            raise ConfigError(f"{where}.name: {exc.args[0]}") from exc
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for key in options:
            if key not in params and not takes_any:
                known = ", ".join(k for k in params if k != "self")
                raise ConfigError(f"unknown config key {where}.options.{key!r} for {self.kind} {name!r} (known: {known})")
        return factory(**options)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories


ENCODERS = Registry("encoder")
OBJECTIVES = Registry("objective")
EVALUATORS = Registry("evaluator")
