"""Judge throughput for summarization rewards (issue: summarization).

Entailment judge and reward model, summaries/s at batch sizes 1, 8 and 64 on this machine,
on KeyFacts documents (3 key facts, 3 fillers: about 35 words; summaries of 3 sentences). The judge is a ``RobertaForSequenceClassification`` of the default judge's shape
(distilroberta-base, 82M parameters) and the reward model a ``LlamaForSequenceClassification``
on lmgym's 20M "small" Llama, both built locally with random weights (throughput depends on the
shape, not the weights; no hub here). Then the vector env's batched step (64 envs, one judge
call) against 64 single-env steps, and the speed-up.

    python benchmarks/bench_summarization.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import gymnasium as gym
from bench_verifier import timed  # median seconds of fn() after a warm-up (this folder is on sys.path)

import lmgym  # noqa: F401
from lmgym.envs.summarization import KeyFactsTask
from lmgym.rewards.summarization import EntailmentJudge, RewardModel, build_tiny_nli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--summaries", type=int, default=64)
    args = parser.parse_args()
    task = KeyFactsTask(facts=3, fillers=3)
    problems = [task.problem("test", i) for i in range(args.summaries)]
    documents = [p.meta["document"] for p in problems]
    summaries = [p.answer for p in problems]
    with tempfile.TemporaryDirectory() as tmp:
        nli = str(build_tiny_nli(Path(tmp) / "nli", corpus=documents, shape="distilroberta"))
        from lmgym.models import tiny_llama

        model, tokenizer = tiny_llama(size="small", seed=0)
        model.save_pretrained(Path(tmp) / "base")
        tokenizer.save_pretrained(Path(tmp) / "base")
        RewardModel.from_base(str(Path(tmp) / "base"), heads=4).save(Path(tmp) / "rm")
        rm = RewardModel.load(Path(tmp) / "rm")
        rows = []
        for batch in (1, 8, 64):
            judge = EntailmentJudge(nli, batch_size=batch * 3)  # 3 sentences per summary

            def entail():
                for start in range(0, len(summaries), batch):
                    judge.judge(documents[start:start + batch], summaries[start:start + batch])

            def reward():
                rm.score([p.question for p in problems], summaries, batch_size=batch)

            rows.append((batch, len(summaries) / timed(entail, args.repeats), len(summaries) / timed(reward, args.repeats)))
        print(f"summaries/s on KeyFacts (3 facts + 3 fillers), median of {args.repeats} after a warm-up:")
        print(f"{'batch':>5s} {'entailment (82M)':>17s} {'reward model (20M, 4 heads)':>28s}")
        for batch, entail_rate, rm_rate in rows:
            print(f"{batch:5d} {entail_rate:17.1f} {rm_rate:28.1f}")

        envs = gym.make_vec("lmgym/KeyFacts-v0", num_envs=64, facts=3, fillers=3, judge="entailment", nli_model=nli,
                            split="test")
        single = gym.make("lmgym/KeyFacts-v0", facts=3, fillers=3, judge="entailment", nli_model=nli, split="test")

        def vector_step():
            envs.reset(options={"index": list(range(64))})
            envs.step(summaries[:64])

        def one_by_one():
            for i in range(64):
                single.reset(options={"index": i})
                single.step(summaries[i])

        batched, serial = timed(vector_step, args.repeats), timed(one_by_one, args.repeats)
        print(f"vector env step, 64 summaries: {batched:.2f} s batched vs {serial:.2f} s one by one: {serial / batched:.1f}x")


if __name__ == "__main__":
    main()
