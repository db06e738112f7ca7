"""Data to map and to test with: datasets, the synthetic town, synthetic embeddings and routes.

Raises only DatasetError.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'GeoImageSet': 'datasets', 'Dataset': 'datasets', 'LoadedDataset': 'datasets',
    'load_dataset': 'datasets', 'read_csv': 'datasets', 'read_folder': 'datasets',
    'read_dbstruct': 'datasets', 'write_dbstruct': 'datasets', 'utm_filename': 'datasets',
    'write_folder_layout': 'datasets', 'make_town': 'town', 'TownDataset': 'town',
    'town_calibration': 'town.views', 'frames_from_set': 'bag_frames',
    'SyntheticConfig': 'synthetic_embeddings', 'generate': 'synthetic_embeddings',
    'Route': 'synthetic_route', 'looping_route': 'synthetic_route',
    'town_loop_route': 'synthetic_route',
})
