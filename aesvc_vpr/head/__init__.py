"""The projection head: networks, losses, training, head files, and what it is measured against.

AE-SVC teacher and (SS)2D student, the Projector that applies a head file, and the linear
baselines (truncation, PCA, PCA-whitening). Raises only HeadError.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'Projection': 'projection', 'Projector': 'projector', 'fit_head': 'training',
    'train_head': 'training', 'TrainedHead': 'training', 'load_head': 'headfile',
    'save_head': 'headfile', 'HeadFile': 'headfile', 'HeadMeta': 'headfile',
    'Standardisation': 'headfile', 'AESVCAutoencoder': 'networks', 'SS2DStudent': 'networks',
    'Truncation': 'baselines', 'PCA': 'baselines', 'AesvcEncoder': 'baselines',
    'fit_ssd': 'baselines', 'fit_aesvc_per_size': 'baselines', 'cosine_stats': 'quality',
    'prefix_recall': 'quality',
})
