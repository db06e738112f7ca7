"""Scoring: a map's retrieval at several prefix sizes with baselines, and loop closure.

Raises only EvaluationError.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'evaluate_map': 'map_eval', 'evaluate_representations': 'map_eval',
    'format_table': 'map_eval', 'plot_recall': 'map_eval', 'write_json': 'map_eval',
    'evaluate_loops': 'loop_eval', 'LoopFrame': 'loop_eval', 'LoopReport': 'loop_eval',
    'evaluate_sequence': 'sequence_eval', 'calibrate_localizer': 'calibration_eval',
})
