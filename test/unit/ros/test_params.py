"""The parameter table, config/aesvc_vpr.yaml and the config dataclasses agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aesvc_vpr.config import MatchConfig, SearchConfig
from aesvc_vpr.errors import ConfigError
from aesvc_vpr.ros.params import (default_values, MODES, PARAMS, PARAMS_BY_NAME,
                                  settings_from_values, with_value)

CONFIG = Path(__file__).resolve().parents[3] / 'config' / 'aesvc_vpr.yaml'


def flatten(tree: dict, prefix: str = '') -> dict[str, object]:
    """Nested YAML groups -> dotted ROS parameter names, as rcl's YAML parser does."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flatten(value, f'{name}.'))
        else:
            out[name] = value
    return out


def test_config_yaml_lists_every_parameter_with_its_default() -> None:
    document = yaml.safe_load(CONFIG.read_text())
    assert list(document) == ['/**']
    values = flatten(document['/**']['ros__parameters'])
    assert values == default_values()
    for name, value in values.items():
        # a YAML int for a float parameter would be refused by rclpy as the wrong type
        assert type(value) is type(PARAMS_BY_NAME[name].default), name


def test_defaults_come_from_the_dataclasses() -> None:
    defaults = default_values()
    assert defaults['search.prefix_dim'] == SearchConfig().prefix_dim
    assert defaults['match.top_k'] == MatchConfig().top_k
    assert defaults['mode'] == 'localization' and defaults['mode'] in MODES
    assert defaults['autostart'] is True
    assert defaults['map_frame'] == 'map'


def test_rebuild_settings_are_read_only_and_tunables_are_not() -> None:
    read_only = {p.name for p in PARAMS if p.read_only}
    assert {'backbone.model_name', 'backbone.weights', 'backbone.device', 'backbone.input_size',
            'head_path', 'map_path'} <= read_only
    assert not {'search.prefix_dim', 'match.top_k', 'match.min_score',
                'max_rate_hz'} & read_only


def test_defaults_lie_inside_their_ranges() -> None:
    for p in PARAMS:
        if p.limits:
            assert p.limits[0] <= p.default <= p.limits[1], p.name
            if len(p.limits) > 2:
                assert (p.default - p.limits[0]) % p.limits[2] == 0, p.name


def test_settings_from_values_groups_by_dataclass() -> None:
    settings = settings_from_values({'search.prefix_dim': 32, 'match.top_k': 3,
                                     'backbone.model_name': 'patchgrid', 'map_path': '/m'})
    assert settings.search.prefix_dim == 32
    assert settings.match.top_k == 3
    assert settings.backbone.model_name == 'patchgrid'
    assert settings.node.map_path == '/m'
    assert settings.match.min_score == MatchConfig().min_score


@pytest.mark.parametrize('name, value, reason', [
    ('match.top_k', 0, 'match.top_k must be >= 1'),
    ('match.min_score', 1.5, r'match.min_score must be in \[-1, 1\]'),
    ('image_reliability', 'sometimes', 'image_reliability must be one of'),
    ('mode', 'slam', 'mode must be one of'),
    ('max_rate_hz', -1.0, r'max_rate_hz must be 0 \(no cap\) or >= 0\.1'),
    ('max_rate_hz', 0.001, r'max_rate_hz must be 0 \(no cap\) or >= 0\.1'),
    ('image_transport', 'theora', 'image_transport must be one of'),
    ('workers', 0, r'workers must be 1\.\.16'),
    ('no_such_param', 1, 'unknown parameter'),
])
def test_invalid_values_are_refused_with_a_reason(name: str, value: object, reason: str) -> None:
    settings = settings_from_values({})
    with pytest.raises(ConfigError, match=reason):
        with_value(settings, name, value)


def test_loop_closure_mode_refuses_more_than_one_worker() -> None:
    settings = settings_from_values({'mode': 'loop_closure'})
    with pytest.raises(ConfigError, match='workers must be 1 in mode loop_closure'):
        with_value(settings, 'workers', 2)


def test_with_value_keeps_the_rest() -> None:
    settings = settings_from_values({'match.top_k': 7})
    changed = with_value(settings, 'search.prefix_dim', 16)
    assert changed.search.prefix_dim == 16
    assert changed.match.top_k == 7
    assert settings.search.prefix_dim == SearchConfig().prefix_dim


def test_nested_onnx_parameters_reach_the_onnx_config() -> None:
    settings = settings_from_values({'backbone.model_name': 'onnx',
                                     'backbone.onnx.preset': 'custom',
                                     'backbone.onnx.mean': [0.5, 0.5, 0.5],
                                     'backbone.onnx.layout': 'nhwc'})
    onnx = settings.backbone.onnx
    assert (onnx.preset, onnx.mean, onnx.layout) == ('custom', (0.5, 0.5, 0.5), 'nhwc')
    changed = with_value(settings, 'backbone.onnx.pooling', 'gem')
    assert changed.backbone.onnx.pooling == 'gem' and changed.backbone.onnx.layout == 'nhwc'
    with pytest.raises(ConfigError, match='backbone.onnx.resize must be one of'):
        with_value(settings, 'backbone.onnx.resize', 'squash')
    with pytest.raises(ConfigError, match='set backbone.onnx.preset to custom'):
        settings_from_values({'backbone.onnx.std': [0.5, 0.5, 0.5]})
