"""Localisation against a map: Encoder (backbone + head), map database, map builder, Localizer.

The node, replay and evaluation all run these. Raises only MapError.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'Encoder': 'encoder', 'MapDatabase': 'mapdb', 'build_map': 'mapbuild',
    'map_writer_lock': 'map_writes',
    'Localizer': 'localizer', 'Localization': 'localizer', 'Match': 'localizer',
    'PlaceFilter': 'place_filter', 'SequenceLocalizer': 'tracking',
    'filter_sequence': 'tracking', 'Calibration': 'calibration',
    'load_calibration': 'calibration', 'store_calibration': 'calibration',
})
