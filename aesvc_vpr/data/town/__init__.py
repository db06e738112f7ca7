"""A synthetic geotagged town: the dataset the demo and the tests run on without downloads.

``make_town`` renders a database survey and a query run through a procedurally textured street
grid and writes them in every format the project reads (folder layout, NetVLAD dbStruct .mat,
rosbag2, truth.json). It is imported lazily so that render workers stay light.
"""

from __future__ import annotations

from typing import Any

__all__ = ['TownDataset', 'make_town']


def __getattr__(name: str) -> Any:
    if name in __all__:
        from aesvc_vpr.data.town import generate
        return getattr(generate, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
