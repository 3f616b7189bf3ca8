"""Pretrain (SFT) lmgym's tiny models on procedural task data, and cache them on disk.

The default policy every CPU benchmark starts from ships with the package
(``lmgym/assets/arithmetic-tiny``, 3.4 MB): a ~0.9M-parameter Llama with a character tokenizer,
supervised on reference solutions of ``lmgym/Arithmetic-v0``'s train split. It is a fixed
artifact, SHA-256 :data:`DEFAULT_MODEL_SHA256` on every machine, because pretraining is not
bit-reproducible across CPUs (a fresh machine once pretrained other weights, 68.6% instead of
56.0% base accuracy, and no leaderboard entry verified). :func:`default_model` returns it and
checks its hash; ``lmgym pretrain`` builds new models (into the cache) from a
:class:`PretrainConfig`, which is how the shipped one was made. The step count is chosen so that the model
is decent (at least 40% test accuracy) but far from perfect, so RL has room to improve it and
the reward standard deviation per prompt is not near zero.

Half the training examples carry a random *tag* (1-3 letters and a space) between the prompt and
the solution, which the model learns to read past. Without it the model cannot be conditioned
on any text at all (a short label wrecks a tag-free model's accuracy; README.md has the
measurement), and return-conditioned RL (agents/rcrl.py), which acts on a "good" label, is
dead on arrival.

The cache lives in ``$LMGYM_CACHE`` (default ``~/.cache/lmgym``) under ``models/<name>-<hash>``,
where the hash covers the whole :class:`PretrainConfig`; a model is written to a temporary
folder and renamed into place, so an interrupted run never leaves a half-written model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from lmgym.io import atomic_dir

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_SHA256", "SHIPPED", "PretrainConfig", "cache_dir", "default_model",
           "evaluate_greedy", "model_path", "pretrain", "shipped_model"]

ASSETS = Path(__file__).with_name("assets")
DEFAULT_MODEL = ASSETS / "arithmetic-tiny"
DEFAULT_MODEL_SHA256 = "3c2dde7a10dc41827bcdc321e1acd7f6892c42a89df7542510093b06113a5546"

# The tiny models that ship with the package, one per task family of the CPU suite: name ->
# (folder under lmgym/assets, SHA-256 of its weights). Each is a fixed artifact for the same
# reason as the default (pretraining is not bit-reproducible across CPUs); its
# lmgym_pretrain.json records the PretrainConfig it was built from and its measured accuracy.
SHIPPED = {
    "default": ("arithmetic-tiny", DEFAULT_MODEL_SHA256),
    "arithmetic-tiny": ("arithmetic-tiny", DEFAULT_MODEL_SHA256),
    "tinycode-tiny": ("tinycode-tiny", "378d7faf30b8f6058c4c900124f07af653b0f04bab6554dfe357cda0dfd9225b"),
    "bandit-tiny": ("bandit-tiny", "bc1c02e42a6fa332dfaef7ce50fd08eea5a531cd0dee16155913536e5b0311b1"),
    "keyfacts-tiny": ("keyfacts-tiny", "fff00ee648a23bcd2c8c7a5a3043ce36e7ac79d846ed802e86ca6c796ca3d599"),
    # lmgym/MultiStepArithmetic-v0, the Havrilla et al. reproduction's starting model
    "multistep-tiny": ("multistep-tiny", "b81baee312d3f7dc76059450804a0df1d485c427f3deaa5cfdb083d96b18b65f"),
}


@dataclass(frozen=True)
class PretrainConfig:
    """Supervised pretraining on one procedural task's reference solutions."""

    task: str = "lmgym.envs.math:ArithmeticTask"
    task_kwargs: dict = field(default_factory=dict)  # {} = the env's default difficulty
    size: str = "tiny"  # a key of lmgym.models.TINY_SHAPES
    steps: int = 1000  # calibrated so the default model is decent but far from perfect (README.md)
    batch_size: int = 128
    lr: float = 3e-3  # AdamW, linear warm-up then cosine decay to 10%
    warmup_steps: int = 50
    seed: int = 0
    eval_problems: int = 500  # greedy accuracy on the first problems of the validation split
    tag_rate: float = 0.5  # share of examples with a random tag between prompt and solution (0: none)
    eval_max_tokens: int = 32  # new tokens in the final greedy evaluation (code needs more than arithmetic)
    init: str | None = None  # start from this model (a shipped name or a folder: its weights and tokenizer), not random

    def fingerprint(self) -> str:
        fields = dataclasses.asdict(self)
        for name, default in (("eval_max_tokens", 32), ("init", None)):  # added later: configs that leave them
            if fields[name] == default:  # keep their old names
                del fields[name]
        payload = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"{self.task.rsplit(':', 1)[1].removesuffix('Task').lower()}-{self.size}-{self.fingerprint()}"


# The PretrainConfig of each shipped family model (``lmgym pretrain --task NAME`` rebuilds it into
# the cache; on another CPU it may come out with other weights, hence the shipped artifacts).
# Steps were chosen on the validation split so that greedy accuracy lands in a band with room
# for RL (each model's lmgym_pretrain.json records the steps tried and what they scored).
FAMILY_CONFIGS = {
    "arithmetic": PretrainConfig(),
    "tinycode": PretrainConfig(task="lmgym.envs.code:TinyCodeTask", steps=450, batch_size=64, warmup_steps=30,
                               eval_problems=300, eval_max_tokens=96),
    # documents of 2 key facts and 1 filler: on the default 3 + 2 a tiny model needs far longer to copy facts
    "keyfacts": PretrainConfig(task="lmgym.envs.summarization:KeyFactsTask", task_kwargs={"facts": 2, "fillers": 1},
                               steps=530, batch_size=32, warmup_steps=30, eval_problems=300, eval_max_tokens=140),
    # 2-3 step +/- expressions worked one operation at a time (Havrilla et al.'s setting: samples differ in
    # their reasoning, and the dense reward pays each correct intermediate), continued from the default model
    "multistep": PretrainConfig(task_kwargs={"steps": [2, 3]}, init="default", steps=600, batch_size=64, lr=3e-3,
                                warmup_steps=30, eval_problems=300, eval_max_tokens=48),
    # answers drawn from the CoPG paper's behaviour policy (BanditTask.pretrain_solution)
    "bandit": PretrainConfig(task="lmgym.envs.bandit:BanditTask", steps=150, batch_size=64, warmup_steps=10,
                             eval_problems=1, eval_max_tokens=2),
}


def cache_dir() -> Path:
    return Path(os.environ.get("LMGYM_CACHE", Path.home() / ".cache" / "lmgym"))


def default_model(config: PretrainConfig | None = None, progress: bool = True) -> Path:
    """The shipped default model (``config`` None), after checking its SHA-256; or the cached
    pretrained model for ``config``, pretraining it if needed."""
    if config is None:
        return shipped_model("default")
    path = cache_dir() / "models" / config.name
    if (path / "lmgym_pretrain.json").is_file():
        return path
    return pretrain(config, path, progress=progress)


def shipped_model(name: str) -> Path:
    """The folder of the shipped tiny model ``name`` (a key of :data:`SHIPPED`), after checking
    its SHA-256."""
    from lmgym.io import weights_hash

    if name not in SHIPPED:
        raise KeyError(f"no shipped model {name!r}; shipped: {sorted(SHIPPED)}")
    folder, expected = SHIPPED[name]
    path = ASSETS / folder
    found = weights_hash(str(path))
    if found != expected:
        raise RuntimeError(f"the shipped model at {path} has SHA-256 {found}, not {expected}: reinstall lmgym "
                           "(git LFS or a partial copy?)")
    return path


def model_path(model: str) -> str:
    """A model name as agents and the bench take it: ``"default"`` is lmgym's shipped default
    model, a name in :data:`lmgym.hub.NAMED` its cached folder (built on first use); any other
    hub name or folder is returned as it is."""
    from lmgym.hub import resolve

    return resolve(model)


def _batch(tokenizer, prompts: list[str], completions: list[str]):
    """Right-padded ids with labels only on completion tokens (+ EOS); prompts are masked."""
    import torch

    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    rows = [p + c + [tokenizer.eos_token_id] for p, c in zip(prompt_ids, completion_ids)]
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, p) in enumerate(zip(rows, prompt_ids)):
        input_ids[i, : len(row)] = torch.tensor(row)
        labels[i, len(p) : len(row)] = torch.tensor(row[len(p) :])
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask, labels


def evaluate_greedy(model, tokenizer, task, split: str = "test", limit: int = 500, max_new_tokens: int = 32) -> float:
    """Mean reward (accuracy) of greedy decoding on the first ``limit`` problems of ``split``."""
    from lmgym.generation.hf import HFGenerator
    from lmgym.rollout import evaluate
    from lmgym.vector import LMVectorEnv

    envs = LMVectorEnv(min(limit, task.num_problems(split)), task, split=split)
    generator = HFGenerator(model, tokenizer=tokenizer, batch_size=250)
    return float(evaluate(envs, generator, max_tokens=max_new_tokens).rewards.mean())


def pretrain(config: PretrainConfig, out_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Train a tiny model by ``config`` and save it (HF format + tokenizer) to ``out_dir``."""
    import random
    import string

    import torch
    from tqdm.auto import tqdm

    from lmgym.core import build_template, load_object
    from lmgym.models import tiny_llama

    out_dir = Path(out_dir)
    torch.set_num_threads(os.cpu_count() or 1)
    task = load_object(config.task)(**config.task_kwargs)
    prompt_for = build_template(task, "plain")
    if config.init is None:
        model, tokenizer = tiny_llama(size=config.size, seed=config.seed)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        init = shipped_model(config.init) if config.init in SHIPPED else Path(model_path(config.init))
        model, tokenizer = AutoModelForCausalLM.from_pretrained(init), AutoTokenizer.from_pretrained(init)
        torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=0.0)

    def lr_factor(step: int) -> float:
        import math

        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress_ = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    rng = random.Random(config.seed)
    tag_rng = random.Random(config.seed + 1)  # its own stream: tag_rate=0 draws the same problems as before tags

    def tag() -> str:
        if tag_rng.random() >= config.tag_rate:
            return ""
        return "".join(tag_rng.choice(string.ascii_letters) for _ in range(tag_rng.randint(1, 3))) + " "

    num_train = task.num_problems("train")
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(config.steps), desc=f"pretrain {config.name}", disable=not progress)
    for step in bar:
        problems = [task.problem("train", rng.randrange(num_train)) for _ in range(config.batch_size)]
        solutions = [task.pretrain_solution(p, rng) for p in problems]
        input_ids, attention_mask, labels = _batch(tokenizer, [prompt_for(p) + tag() for p in problems], solutions)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    train_seconds = time.perf_counter() - start
    accuracy = evaluate_greedy(model, tokenizer, task, "validation", config.eval_problems, config.eval_max_tokens)

    try:
        with atomic_dir(out_dir, overwrite=False) as staging:
            model.save_pretrained(staging)
            tokenizer.padding_side = "left"
            tokenizer.save_pretrained(staging)
            meta = {
                "config": dataclasses.asdict(config),
                "validation_accuracy": accuracy,
                "eval_problems": config.eval_problems,
                "train_seconds": round(train_seconds, 1),
                "parameters": sum(p.numel() for p in model.parameters()),
                "torch_threads": torch.get_num_threads(),
            }
            (staging / "lmgym_pretrain.json").write_text(json.dumps(meta, indent=2))
    except FileExistsError:
        if not (out_dir / "lmgym_pretrain.json").is_file():  # not a concurrent winner: a real error
            raise
    if progress:
        print(f"saved {out_dir}: validation accuracy {accuracy:.1%} after {train_seconds:.0f} s of training")
    return out_dir
