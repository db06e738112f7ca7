"""The backbone flags shared by the subcommands fill every BackboneConfig field."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from aesvc_vpr.cli._backbone import add_backbone_arguments, backbone_config
from aesvc_vpr.config import BackboneConfig, OnnxConfig
from aesvc_vpr.errors import ConfigError


def parse(argv: list[str], model_from: str = '') -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_backbone_arguments(parser, model_from)
    return parser.parse_args(argv)


def test_no_flags_give_the_dataclass_defaults() -> None:
    assert backbone_config(parse([])) == BackboneConfig()


def test_every_field_has_a_flag() -> None:
    cfg = backbone_config(parse([
        '--model', 'vit_base_patch14_dinov2', '--weights', '/w.pth', '--input-size', '322',
        '--descriptor', 'gem', '--gem-p', '4.5', '--runtime', 'onnx-int8', '--device', 'cpu',
        '--batch-size', '4', '--allow-download', '--calibration-images', '/robot/images',
        '--onnx-pooling', 'gem']))
    changed = {f.name for f in dataclasses.fields(BackboneConfig)
               if getattr(cfg, f.name) != getattr(BackboneConfig(), f.name)}
    assert changed == {f.name for f in dataclasses.fields(BackboneConfig)} - {'device'}
    assert (cfg.gem_p, cfg.allow_download, cfg.runtime) == (4.5, True, 'onnx-int8')
    assert cfg.calibration_images == '/robot/images'


def test_the_model_can_come_from_the_map() -> None:
    args = parse([], model_from="the map's")
    assert backbone_config(args, 'patchgrid').model_name == 'patchgrid'
    assert backbone_config(parse(['--backbone', 'patchgrid'], "the map's"),
                           'vit_small_patch14_dinov2').model_name == 'patchgrid'


def test_bad_values_are_refused_by_the_dataclass() -> None:
    with pytest.raises(ConfigError, match='gem_p must be > 0'):
        backbone_config(parse(['--gem-p', '0']))


def test_every_onnx_field_has_a_flag() -> None:
    onnx = backbone_config(parse([
        '--model', 'onnx', '--onnx-preset', 'custom', '--onnx-input-size', '320',
        '--onnx-resize', 'crop', '--onnx-channels', 'bgr', '--onnx-layout', 'nhwc',
        '--onnx-scale', '1', '--onnx-offset', '-128', '--onnx-mean', '1', '2', '3',
        '--onnx-std', '4', '5', '6', '--onnx-output', 'desc', '--onnx-pooling', 'avg',
        '--onnx-normalised'])).onnx
    changed = {f.name for f in dataclasses.fields(OnnxConfig)
               if getattr(onnx, f.name) != getattr(OnnxConfig(), f.name)}
    assert changed == {f.name for f in dataclasses.fields(OnnxConfig)}
    assert (onnx.mean, onnx.std, onnx.offset) == ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0), -128.0)
    with pytest.raises(ConfigError, match='set backbone.onnx.preset to custom'):
        backbone_config(parse(['--onnx-scale', '1']))
