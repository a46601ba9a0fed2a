"""Which Demucs model ``--model`` means, and loading it once: a released name, or a local copy in any of the
layouts demucs itself writes.

- a name (``htdemucs``, ``htdemucs_ft``, ``mdx_extra``...): ``demucs.pretrained.get_model`` -- the Hugging Face
  hub first, then the legacy download URL; both cache on the VM (``~/.cache``), so once per VM.
- ``X.th``: one model package (``{klass, args, kwargs, state}``, torch.save'd: demucs.states.load_model).
- ``X.safetensors``: one model in the Hugging Face export layout (class and arguments in the metadata).
- ``X.yaml``: a bag of models (``models: [sig, ...]``, optional weights, segment) whose ``<sig>.th``,
  ``<sig>-<checksum>.th`` or ``<sig>.safetensors`` files lie next to it.
- a folder: the one .yaml bag in it, else its one model file.

Torch-free to import; torch and demucs are imported when a model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from f5guard.recipe.stagecli import BadInput, StageFailed, one_line

MODEL_SUFFIXES = (".th", ".safetensors")


def _is_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.endswith((*MODEL_SUFFIXES, ".yaml")) or Path(spec).exists()


def model_identity(spec: str) -> dict[str, Any]:
    """What the output depends on: the name, or the local files' names, sizes and mtimes (a replaced model file
    at the same path redoes the separation)."""
    if not _is_path(spec):
        return {"name": spec}
    path = Path(os.path.abspath(spec))
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.exists()]
    return {"path": str(path), "files": hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]}


def check_spec(spec: str) -> None:
    """Fail early (before any audio or torch) on a local model path that is not there."""
    if _is_path(spec) and not Path(os.path.abspath(spec)).exists():
        raise BadInput(f"--model {spec}: no such file or folder")


def load_separator(spec: str) -> Any:
    """The model (or bag of models) in eval mode; BadInput for a path that is not there, StageFailed otherwise."""
    if _is_path(spec):
        path = Path(os.path.abspath(spec))
        if not path.exists():
            raise BadInput(f"--model {spec}: no such file or folder")
        model = _load_local(path)
    else:
        model = _load_named(spec)
    model.eval()
    if "vocals" not in model.sources:
        raise StageFailed(f"model {spec}: has no vocals stem (its stems: {', '.join(model.sources)})")
    return model


def _load_named(name: str) -> Any:
    from demucs.pretrained import get_model

    try:
        return get_model(name)
    except Exception as err:  # hub, URL, checksum and unpickling failures all mean "not loadable"
        raise StageFailed(f"load demucs model {name}: {type(err).__name__}: {one_line(str(err), 200)} (a released "
                          "model is downloaded once per VM: needs the network, or pass --model PATH to a local "
                          "copy)") from err  # fmt: skip


def _load_local(path: Path) -> Any:
    try:
        if path.is_dir():
            return _load_local(_pick_in_folder(path))
        if path.suffix == ".yaml":
            return _load_bag(path)
        if path.suffix in MODEL_SUFFIXES:
            return _load_file(path)
    except (BadInput, StageFailed):
        raise
    except Exception as err:  # unpickling, state-dict and yaml errors: the file is not a model
        raise StageFailed(f"load demucs model {path}: {type(err).__name__}: {one_line(str(err), 200)}") from err
    raise BadInput(f"--model {path}: expected a .th, .safetensors or .yaml file, or a folder holding one")


def _pick_in_folder(folder: Path) -> Path:
    bags = sorted(folder.glob("*.yaml"))
    if len(bags) == 1:
        return bags[0]
    models = sorted(p for p in folder.iterdir() if p.suffix in MODEL_SUFFIXES)
    if not bags and len(models) == 1:
        return models[0]
    found = ", ".join(p.name for p in (bags or models)) or "no .yaml, .th or .safetensors file"
    raise BadInput(f"--model {folder}: cannot tell which model to use ({found}); name the file")


def _load_file(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from demucs.hf import load_safetensors_model

        return load_safetensors_model(path)
    from demucs.states import load_model

    return load_model(path)  # type: ignore[no-untyped-call]


def _load_bag(path: Path) -> Any:
    import yaml  # type: ignore[import-untyped]
    from demucs.apply import BagOfModels
    from demucs.repo import LocalRepo

    bag = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(bag, dict) or not isinstance(bag.get("models"), list) or not bag["models"]:
        raise StageFailed(f"load demucs model {path}: not a bag of models (a 'models' list)")
    repo = LocalRepo(path.parent)  # <sig>.th and <sig>-<checksum>.th, checksum verified
    models = []
    for sig in bag["models"]:
        weights = path.parent / f"{sig}.safetensors"
        if weights.is_file():
            models.append(_load_file(weights))
        elif repo.has_model(str(sig)):
            models.append(repo.get_model(str(sig)))
        else:
            raise StageFailed(f"load demucs model {path}: model {sig} of the bag is not next to it "
                              f"({sig}.th or {sig}.safetensors)")  # fmt: skip
    return BagOfModels(models, bag.get("weights"), bag.get("segment"))
