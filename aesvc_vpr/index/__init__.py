"""Prefix search: L2-normalised embedding prefixes, the one prefix index, and ranking scores.

Raises only SearchError.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'l2_prefix': 'prefix', 'PrefixIndex': 'prefix_index', 'INDEX_TYPES': 'prefix_index',
    'positives_within': 'ranking', 'relevance': 'ranking', 'recall_at_n': 'ranking',
    'map_at_k': 'ranking', 'held_out_queries': 'prefix_index', 'FunnelIndex': 'funnel',
    'SavedIndex': 'saved',
})
