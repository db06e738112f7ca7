"""Public names of a subpackage, imported from their module on first use.

A subpackage's ``__init__`` lists its API here instead of importing it, so importing one light
module of a layer (a config reader, a render worker) never pulls in torch or OpenCV through the
package's other modules.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """Build a package's ``__all__`` and module ``__getattr__`` (PEP 562).

    Args:
        package: the package's ``__name__``.
        names: public name -> module of the package that defines it, e.g.
            ``{'load_backbone': 'registry'}``.

    Returns:
        (sorted ``__all__``, ``__getattr__``).
    """
    def __getattr__(name: str) -> Any:   # noqa: N807 (the module hook's fixed name)
        if name not in names:
            raise AttributeError(f'module {package!r} has no attribute {name!r}')
        return getattr(importlib.import_module(f'{package}.{names[name]}'), name)

    return sorted(names), __getattr__
