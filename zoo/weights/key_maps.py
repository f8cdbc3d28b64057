"""Key maps: how another library's checkpoint keys become ours. A card names one by its registry name
(``zoo.registry`` kind ``key_map``), never by a module path: cards are untrusted, so no card field may choose
code to import. Register your own with ``zoo.registry.register("key_map", NAME, "module:function")`` or an
entry point ``key_map.NAME`` in the ``modalzoo.plugins`` group."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from zoo import registry
from zoo.errors import WeightsError
from zoo.io import check_keys
from zoo.spec import SpecError

KeyMap = Callable[[dict[str, Any]], Mapping[str, "str | None"]]


def check_key_map_name(name: object, what: str) -> str:
    """``name`` if it is a plain registry name (what a card may hold); a ``module:function`` path or any
    non-string is refused with the registered names listed."""
    if not isinstance(name, str) or not name or ":" in name or "/" in name:
        raise SpecError(
            f"{what}: key_map must be the name of a registered key map ({', '.join(registry.names('key_map'))}), "
            f"got {name!r}. Cards cannot name code to import; register your own key map in code "
            "(zoo.registry.register('key_map', NAME, 'module:function')) or through a 'modalzoo.plugins' entry point"
        )
    return name


def resolve_key_map(name: str, what: str) -> KeyMap:
    """The registered key map called ``name`` (an unknown name lists the registered ones)."""
    return registry.resolve("key_map", check_key_map_name(name, what))


def rename_state(state: Mapping[str, Any], key_map: KeyMap, what: str) -> dict[str, Any]:
    """Rename a checkpoint's keys through an explicit map, the one contract every key map follows.

    ``key_map(state)`` returns ``{checkpoint key: our key, or None to drop it on purpose}`` and must name every
    key of the checkpoint, no more and no less; two checkpoint keys may not land on the same key of ours.
    """
    renames = key_map(dict(state))
    check_keys(state.keys(), renames.keys(), f"the key map for {what}")
    clashes = sorted(new for new, n in Counter(renames.values()).items() if new is not None and n > 1)
    if clashes:
        raise WeightsError(f"the key map for {what} sends several checkpoint keys to {', '.join(clashes[:10])}")
    return {new: state[old] for old, new in renames.items() if new is not None}
