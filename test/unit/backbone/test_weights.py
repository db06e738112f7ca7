"""Weights: both file layouts, cache discovery, fingerprints, and clear errors on bad files."""

from __future__ import annotations

import fractions
import hashlib
import json
import os
import shutil

import dinov2_tiny
from dinov2_tiny import META_KEYS_BLOCK, tiny_arch, WIDTH
import pytest
import torch

from aesvc_vpr.backbone.dinov2_archs import MODELS
from aesvc_vpr.backbone.fingerprints import cache_root, fingerprint
from aesvc_vpr.backbone.weights import find_weights, load_weights
from aesvc_vpr.errors import WeightsError

isolated_caches = dinov2_tiny.isolated_caches   # autouse fixture
tiny = dinov2_tiny.tiny                         # each tiny model, per module

SMALL = 'vit_small_patch14_dinov2'


def test_meta_file_has_the_official_key_layout(tiny) -> None:
    keys = set(torch.load(tiny.meta_path, weights_only=True))
    expected = {'cls_token', 'mask_token', 'pos_embed', 'patch_embed.proj.weight',
                'patch_embed.proj.bias', 'norm.weight', 'norm.bias'}
    expected |= {f'blocks.{i}.{k}' for i in range(2) for k in META_KEYS_BLOCK}
    expected |= {'register_tokens'} if tiny.registers else set()
    assert keys == expected
    assert torch.load(tiny.meta_path, weights_only=True)['pos_embed'].shape == (1, 1370, WIDTH)


def test_both_layouts_load_to_identical_timm_tensors(tiny) -> None:
    hf = load_weights(tiny.hf_dir, tiny_arch(tiny.registers))
    meta = load_weights(tiny.meta_path, tiny_arch(tiny.registers))
    assert (hf.layout, meta.layout) == ('transformers', 'meta')
    assert hf.arch == meta.arch == tiny_arch(tiny.registers)
    assert hf.state_dict.keys() == meta.state_dict.keys()
    for key, value in hf.state_dict.items():
        assert torch.equal(value, meta.state_dict[key]), key
    assert ('reg_token' in hf.state_dict) == tiny.registers
    assert 'mask_token' not in hf.state_dict


def test_hf_folder_gives_its_own_head_count(tiny) -> None:
    # config.json states 3 heads; no expected shape is needed
    assert load_weights(tiny.hf_dir).arch == tiny_arch(tiny.registers)


def test_meta_file_of_unofficial_shape_needs_expected_shape(tiny) -> None:
    with pytest.raises(WeightsError, match='head count'):
        load_weights(tiny.meta_path)


def test_corrupt_file(tmp_path) -> None:
    path = tmp_path / 'dinov2_vits14_pretrain.pth'
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match='corrupt') as err:
        load_weights(path, MODELS[SMALL])
    assert str(path) in str(err.value)


@pytest.mark.parametrize('layout', ['meta', 'hf'])
def test_truncated_file(tiny, tmp_path, layout) -> None:
    if layout == 'meta':
        src = target = tmp_path / 'cut.pth'
        data = tiny.meta_path.read_bytes()
    else:
        src = shutil.copytree(tiny.hf_dir, tmp_path / 'hf')
        target = src / 'model.safetensors'
        data = target.read_bytes()
    target.write_bytes(data[:len(data) // 2])
    with pytest.raises(WeightsError, match='truncated') as err:
        load_weights(src, tiny_arch(tiny.registers))
    assert str(target) in str(err.value)


def test_checkpoint_of_another_size(tiny) -> None:
    with pytest.raises(WeightsError, match='width 48.*needs width 384') as err:
        load_weights(tiny.hf_dir, MODELS[SMALL])
    assert SMALL in str(err.value)


def test_registers_mismatch_is_refused(tiny) -> None:
    other = tiny_arch(not tiny.registers)
    with pytest.raises(WeightsError, match='registers'):
        load_weights(tiny.hf_dir, other)


def test_pickled_objects_are_refused(tmp_path) -> None:
    path = tmp_path / 'evil.pth'
    torch.save({'cls_token': torch.zeros(1, 1, 4), 'extra': fractions.Fraction(1, 3)}, path)
    with pytest.raises(WeightsError, match='pickled Python objects'):
        load_weights(path)


def test_not_dinov2_keys_and_config(tmp_path) -> None:
    path = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(2, 3, 7, 7)}, path)
    with pytest.raises(WeightsError, match='not a DINOv2 checkpoint'):
        load_weights(path)
    folder = tmp_path / 'hf_resnet'
    folder.mkdir()
    (folder / 'config.json').write_text(json.dumps({'model_type': 'resnet'}))
    torch.save({'conv1.weight': torch.zeros(2, 3, 7, 7)}, folder / 'pytorch_model.bin')
    with pytest.raises(WeightsError, match='not DINOv2'):
        load_weights(folder)


def test_missing_weights_name_searched_paths_and_how_to_get_them(tmp_path) -> None:
    with pytest.raises(WeightsError) as err:
        find_weights(SMALL)
    text = str(err.value)
    assert str(tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'dinov2_vits14_pretrain.pth') \
        in text
    assert str(tmp_path / 'hf_hub' / 'models--facebook--dinov2-small') in text
    assert 'dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth' in text
    assert 'huggingface-cli download facebook/dinov2-small' in text
    with pytest.raises(WeightsError, match='does not exist'):
        find_weights(SMALL, str(tmp_path / 'nowhere.pth'))


def test_discovers_torch_hub_cache(tiny, tmp_path) -> None:
    name = 'vit_small_patch14_reg4_dinov2' if tiny.registers else SMALL
    file = 'dinov2_vits14_reg4_pretrain.pth' if tiny.registers else 'dinov2_vits14_pretrain.pth'
    target = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / file
    target.parent.mkdir(parents=True)
    shutil.copy(tiny.meta_path, target)
    assert find_weights(name) == target
    # a folder holding the hub file works as backbone.weights too
    assert find_weights(name, str(target.parent)) == target


def test_discovers_hugging_face_cache_snapshot(tiny, tmp_path) -> None:
    repo = 'dinov2-with-registers-small' if tiny.registers else 'dinov2-small'
    name = 'vit_small_patch14_reg4_dinov2' if tiny.registers else SMALL
    repo_dir = tmp_path / 'hf_hub' / f'models--facebook--{repo}'
    shutil.copytree(tiny.hf_dir, repo_dir / 'snapshots' / 'abc123')
    (repo_dir / 'snapshots' / 'empty').mkdir()
    (repo_dir / 'refs').mkdir()
    (repo_dir / 'refs' / 'main').write_text('abc123')
    found = find_weights(name)
    assert found == repo_dir / 'snapshots' / 'abc123'
    assert load_weights(found).layout == 'transformers'


def test_fingerprint_is_sha256_and_cached_by_path_size_mtime(tiny) -> None:
    path = tiny.meta_path
    real = hashlib.sha256(path.read_bytes()).hexdigest()
    assert fingerprint([path]) == real
    index_path = cache_root() / 'fingerprints.json'
    index = json.loads(index_path.read_text())
    assert index[str(path.resolve())]['sha256'] == real
    # a planted digest with the same stamp is returned: the file was not hashed again
    index[str(path.resolve())]['sha256'] = 'f' * 64
    index_path.write_text(json.dumps(index))
    assert fingerprint([path]) == 'f' * 64
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # touched -> rehash
    assert fingerprint([path]) == real
    assert load_weights(path, tiny_arch(tiny.registers)).fingerprint == real
