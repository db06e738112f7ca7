"""Finding and reading DINOv2 weights from local files and the torch.hub / Hugging Face caches.

Accepted: Meta's torch.hub checkpoints, Hugging Face folders (transformers or timm layout), and
whatever of those the two tools have downloaded into their caches.

Nothing here touches the network unless ``allow_download`` is set. Checkpoints are read with
``torch.load(weights_only=True)`` or safetensors, never with plain pickle. Every failure (missing,
corrupt, truncated, another model's weights) is a WeightsError that says which file and what to
do, not a trace from deep inside torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import json
import logging
import os
from pathlib import Path
import zipfile

import torch

from aesvc_vpr.backbone import dinov2_archs as models
from aesvc_vpr.backbone.dinov2_archs import Dinov2Arch
from aesvc_vpr.backbone.fingerprints import fingerprint
from aesvc_vpr.backbone.weight_keys import (arch_of, detect_layout, hf_to_meta, meta_to_timm,
                                            StateDict, strip_prefix)
from aesvc_vpr.common.fileio import sha256_bytes
from aesvc_vpr.errors import WeightsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dinov2Weights:
    """A checkpoint converted to timm's layout, with where it came from."""

    state_dict: StateDict      # timm keys; pos_embed still at the checkpoint's own grid
    arch: Dinov2Arch
    files: tuple[Path, ...]    # the files read (weights and config), for fingerprint and caches
    fingerprint: str           # sha256 hex of the weights file (combined over several files)
    layout: str                # 'meta' | 'transformers' | 'timm' | 'random'


def hf_hub_cache() -> Path:
    """Return the Hugging Face hub cache, resolved as huggingface_hub resolves it."""
    if os.environ.get('HF_HUB_CACHE'):
        return Path(os.environ['HF_HUB_CACHE'])
    home = os.environ.get('HF_HOME') or Path(
        os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'huggingface'
    return Path(home) / 'hub'


def find_weights(model_name: str, weights: str = '', allow_download: bool = False) -> Path:
    """Locate the weights of an official DINOv2 model.

    Args:
        model_name: a timm name from ``dinov2_models.MODELS``.
        weights: a file or folder the user named; '' searches the torch.hub and Hugging Face
            caches.
        allow_download: fetch Meta's checkpoint into the torch.hub cache if nothing is found.

    Returns:
        A checkpoint file or a Hugging Face folder.

    Raises:
        WeightsError: nothing found; the message lists every place searched and how to get them.
    """
    if weights:
        path = Path(weights).expanduser()
        if path.is_dir() and not _hf_weight_files(path) and (path / models.hub_file(
                model_name)).is_file():
            return path / models.hub_file(model_name)
        if path.exists():
            return path
        raise WeightsError(f'backbone.weights {str(path)!r} does not exist; '
                           + _how_to_get(model_name))
    hub_path = Path(torch.hub.get_dir()) / 'checkpoints' / models.hub_file(model_name)
    searched = [str(hub_path)]
    if hub_path.is_file():
        return hub_path
    for repo in models.hf_repos(model_name):
        repo_dir = hf_hub_cache() / ('models--' + repo.replace('/', '--'))
        searched.append(f'{repo_dir}/snapshots/*/')
        snapshot = _hf_snapshot(repo_dir)
        if snapshot is not None:
            return snapshot
    if allow_download:
        log.info('downloading %s to %s', models.hub_url(model_name), hub_path)
        hub_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(models.hub_url(model_name), str(hub_path))
        except (OSError, RuntimeError) as err:
            raise WeightsError(f'download of {models.hub_url(model_name)} failed ({err}); '
                               + _how_to_get(model_name)) from err
        return hub_path
    raise WeightsError(f'no weights for {model_name} found; searched:\n  '
                       + '\n  '.join(searched) + '\n' + _how_to_get(model_name))


def load_weights(path: str | os.PathLike, expected: Dinov2Arch | None = None) -> Dinov2Weights:
    """Read a checkpoint file or Hugging Face folder and convert it to timm's layout.

    Args:
        path: a Meta ``*_pretrain.pth``, a ``.safetensors`` file, or a folder with
            ``config.json`` and ``model*.safetensors`` (or ``pytorch_model.bin``).
        expected: the shape the caller needs; a checkpoint of another shape is refused.
            Also supplies the head count where the checkpoint has no config.json.

    Returns:
        The tensors in timm's layout with their shape, files and fingerprint.

    Raises:
        WeightsError: unreadable, corrupt, truncated, not DINOv2, or not of the expected shape.
    """
    path = Path(path).expanduser()
    files = _hf_weight_files(path) if path.is_dir() else [path]
    if not files:
        raise WeightsError(f'{path}: no model*.safetensors or pytorch_model.bin in this folder')
    # config.json belongs to Hugging Face folders; a .pth may sit beside anyone's config.json
    config_path = (path if path.is_dir() else path.parent) / 'config.json'
    hf_style = path.is_dir() or path.suffix in ('.safetensors', '.bin')
    config = _read_config(config_path) if hf_style and config_path.is_file() else {}
    state: StateDict = {}
    for file in files:
        state.update(_read_tensors(file))
    try:
        state = strip_prefix(state)
        layout = detect_layout(state)
        if layout == 'transformers':
            state = hf_to_meta(state)
        state = meta_to_timm(state) if layout != 'timm' else state
        arch = _fill_heads(arch_of(state, _config_heads(config)), expected)
    except WeightsError as err:
        raise WeightsError(f'{path}: {err}') from err
    if expected is not None and arch != expected:
        found = models.name_of(arch)
        raise WeightsError(
            f'{path}: checkpoint is {found or "a DINOv2 ViT"} ({arch.describe()}) but '
            f'{models.name_of(expected) or "the model"} needs {expected.describe()}; give the '
            'weights of that model'
            + (f', or set backbone.model_name to {found}' if found else ''))
    used = tuple(files) + ((config_path,) if config else ())
    log.info('loaded %s weights from %s (%s)', layout, path, arch.describe())
    return Dinov2Weights(state, arch, used, fingerprint(files), layout)


def random_weights(arch: Dinov2Arch, seed: int = 0) -> Dinov2Weights:
    """Make random weights of ``arch`` (timm's initialisation at the native 518 px grid).

    For weights-free benchmarks and smoke runs: the descriptors mean nothing, the speed is real.

    Layer scales are set to 1: timm starts them at 1e-5, which would make every block a no-op
    and every image's descriptor the same, hiding any numeric error of a runtime.
    """
    import timm
    torch.manual_seed(seed)
    entry, kwargs = arch.timm_kwargs(518)
    state = timm.create_model(entry, **kwargs).state_dict()
    for key in state:
        if key.endswith('.gamma'):
            state[key] = torch.ones_like(state[key])
    tag = sha256_bytes(f'random:{seed}:{arch}'.encode())
    return Dinov2Weights(state, arch, (), tag, 'random')


def _read_tensors(file: Path) -> StateDict:
    try:
        if file.suffix == '.safetensors':
            from safetensors.torch import load_file
            obj = load_file(str(file))
        else:
            obj = torch.load(file, map_location='cpu', weights_only=True)
    except Exception as err:  # third-party readers raise many types; all mean "unreadable"
        raise WeightsError(f'{file}: {_why_unreadable(file, err)}') from err
    for wrapper in ('state_dict', 'model', 'teacher'):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    tensors = {k: v for k, v in obj.items() if torch.is_tensor(v)} if isinstance(obj, dict) else {}
    if not tensors:
        raise WeightsError(f'{file}: holds no tensors (got {type(obj).__name__})')
    return tensors


def _why_unreadable(file: Path, err: Exception) -> str:
    """Explain a failed read in one line, without torch's multi-paragraph advice."""
    text = str(err).strip()
    if 'Weights only load failed' in text:
        if zipfile.is_zipfile(file):
            return ('holds pickled Python objects besides tensors, which are not loaded '
                    '(torch.load weights_only=True); save a plain state_dict of tensors')
        text = 'not a torch zip archive'
    detail = text.splitlines()[0].split('. ')[0][:120] if text else type(err).__name__
    return (f'cannot read the checkpoint ({detail}); it is corrupt, truncated or not a weights '
            'file: download it again')


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f'{path}: not readable JSON ({err})') from err
    if config.get('model_type', 'dinov2').startswith('dinov2') or 'architecture' in config:
        return config
    raise WeightsError(f'{path}: model_type {config.get("model_type")!r} is not DINOv2')


def _config_heads(config: dict) -> int:
    """Return the head count config.json states (transformers) or implies (timm); 0 if none."""
    if 'num_attention_heads' in config:
        return int(config['num_attention_heads'])
    known = models.MODELS.get(str(config.get('architecture', '')).split('.')[0])
    return known.num_heads if known else 0


def _fill_heads(arch: Dinov2Arch, expected: Dinov2Arch | None) -> Dinov2Arch:
    """Complete the head count the tensors cannot show: official shape first, then ``expected``.

    Raises:
        WeightsError: the count is unknown or does not divide the width.
    """
    if not arch.num_heads:
        for known in models.MODELS.values():
            if known == dataclasses.replace(arch, num_heads=known.num_heads):
                return known
        if expected is None:
            raise WeightsError(f'not an official DINOv2 shape ({arch.describe()}) and no '
                               'config.json gives its head count')
        arch = dataclasses.replace(arch, num_heads=expected.num_heads)
    if arch.embed_dim % arch.num_heads:
        raise WeightsError(f'{arch.num_heads} heads do not divide width {arch.embed_dim}')
    return arch


def _hf_weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob('model*.safetensors'))
    if not files and (folder / 'pytorch_model.bin').is_file():
        files = [folder / 'pytorch_model.bin']
    return files


def _hf_snapshot(repo_dir: Path) -> Path | None:
    """Return the snapshot refs/main points at, else the newest one holding weights."""
    ref = repo_dir / 'refs' / 'main'
    if ref.is_file():
        snapshot = repo_dir / 'snapshots' / ref.read_text().strip()
        if _hf_weight_files(snapshot):
            return snapshot
    snapshots = [s for s in (repo_dir / 'snapshots').glob('*') if _hf_weight_files(s)]
    return max(snapshots, key=lambda s: s.stat().st_mtime) if snapshots else None


def _how_to_get(model_name: str) -> str:
    checkpoints = Path(torch.hub.get_dir()) / 'checkpoints'
    return (f'get them with one of:\n  wget -P {checkpoints} {models.hub_url(model_name)}\n'
            f'  huggingface-cli download {models.hf_repos(model_name)[0]}\n'
            'or set backbone.weights (--weights) to a file or folder, or '
            'backbone.allow_download (--allow-download) to true')
