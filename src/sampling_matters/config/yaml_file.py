"""Settings files: :func:`read_yaml`, YAML's safe loader that refuses a key given twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sampling_matters.config.sections import RECORD_KEYS

__all__ = ["read_yaml"]


def read_yaml(path: Path) -> dict[str, Any]:
    """The settings in a YAML file, keys with ``-`` turned into ``_``.

    The record keys of a run's ``config.yaml`` (:data:`RECORD_KEYS`) are left out.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a regular file, not YAML, not a mapping, or one setting given
            twice (the same key, or with ``-`` and with ``_``).
    """
    import yaml

    if not str(path).strip():
        raise ValueError("the settings file's path is empty")
    if not path.exists():
        raise FileNotFoundError(f"settings file {path} is missing")
    if not path.is_file():
        raise ValueError(f"settings file {path} is not a regular file")
    try:
        with path.open(encoding="utf-8") as handle:
            loaded = yaml.load(handle, Loader=_StrictLoader)  # a SafeLoader: plain data only
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not a valid YAML file: {' '.join(str(error).split())}"
        ) from None
    loaded = {} if loaded is None else loaded
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a mapping of setting names to values")
    settings: dict[str, Any] = {}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name in settings:
            raise ValueError(f"{path}: setting {name!r} is given twice (with '-' and with '_')")
        settings[name] = value
    return {k: v for k, v in settings.items() if k not in RECORD_KEYS}


def _strict_loader() -> Any:
    """``yaml.SafeLoader`` that refuses a mapping holding one key twice."""
    import yaml

    class Strict(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Strict


_StrictLoader = _strict_loader()
