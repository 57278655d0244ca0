"""Where a TRPO policy step's time goes: the surrogate's gradient, the conjugate gradient on
Fisher-vector products, and the line search, on one fixed CartPole batch.

Three programs are timed on the same batch (compile apart, median of ``--repeats`` calls), each
a prefix of the step that :func:`jaxpg.trpo.make_trpo` takes:

* ``gradient``: ``g`` = the gradient of ``mean(ratio * A)``;
* ``gradient + cg``: and ``s = (F + damping I)^-1 g`` (``cg_iters`` Fisher-vector products);
* ``policy step``: and the vmapped backtracking line search (``line_search_steps + 1``
  candidates).

The differences are the parts. The critic's Adam epochs come after, and are in the whole
update's throughput (``python benchmarks/throughput.py --algos ppo trpo``).

    python benchmarks/trpo_step.py --num-envs 4 64 1024
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import log, payload, publish  # noqa: E402
from timing import time_program  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="one size, one repeat")
    p.add_argument("--num-envs", nargs="+", type=int, default=[4, 64, 1024])
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--env", default="CartPole-v1")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import jax

    import jaxpg
    from jaxpg import trust_region
    from jaxpg.agents import make_agent
    from jaxpg.distributions import action_dist
    from jaxpg.rollout import rollout
    from jaxpg.train import rollout_options
    from jaxpg.trpo import natural_gradient_step, trpo_objectives
    from jaxpg.updates import Batch, as_minibatch

    sizes = args.num_envs[:1] if args.quick else args.num_envs
    repeats = 1 if args.quick else (args.repeats or 3)
    rows, results = [], []
    for n in sizes:
        config = jaxpg.TRPOConfig(
            env=args.env, num_envs=n, num_steps=args.num_steps, total_timesteps=n * args.num_steps
        )
        agent = make_agent(config)
        dist = action_dist(config.env_spec.discrete)
        algorithm = jaxpg.make_algorithm(config, agent)
        state = jaxpg.init_state(config, jax.random.key(0))
        hp = state.hparams
        _, transitions = jax.jit(
            lambda s: rollout(
                jax.random.key(1),
                s.params,
                s.env,
                hp.gamma,
                env=config.env_spec,
                agent=agent,
                dist=dist,
                num_steps=config.num_steps,
                options=rollout_options(config),
            )
        )(state)
        targets, _ = algorithm.targets(transitions, hp, state.algo_state)
        mb = as_minibatch(Batch(transitions, targets, ()))

        def objectives(params):
            return trpo_objectives(agent, dist, mb, mb.advantages, params)

        def gradient(params):
            return jax.grad(objectives(params).surrogate)(params)

        def gradient_cg(params):
            return natural_gradient_step(objectives(params), params, hp, cg_iters=config.cg_iters)[
                2
            ]

        def policy_step(params):
            obj = objectives(params)
            surrogate_old, _, full_step, _, _ = natural_gradient_step(
                obj, params, hp, cg_iters=config.cg_iters
            )
            return trust_region.backtracking_line_search(
                obj.surrogate_and_kl,
                params,
                full_step,
                surrogate_old,
                hp.target_kl,
                config.line_search_shrink,
                config.line_search_steps,
            ).params

        row = {"num_envs": n, "batch": n * args.num_steps}
        for name, fn in (
            ("gradient", gradient),
            ("gradient_cg", gradient_cg),
            ("policy_step", policy_step),
        ):
            rec = time_program(fn, state.params, repeats=repeats)
            rec.pop("output")
            row[f"{name}_ms"] = 1e3 * rec["steady_s"]
            results.append({"num_envs": n, "program": name, **rec})
            log(f"{n} envs {name}: {row[f'{name}_ms']:.2f} ms (compile {rec['compile_s']:.1f} s)")
        row["cg_ms"] = row["gradient_cg_ms"] - row["gradient_ms"]
        row["line_search_ms"] = row["policy_step_ms"] - row["gradient_cg_ms"]
        rows.append(row)
    data = payload(
        "trpo_step", "quick" if args.quick else "full", vars(args), results, machine_info()
    )
    columns = [
        ("num_envs", "num_envs"),
        ("batch", "batch (steps)"),
        ("gradient_ms", "gradient ms"),
        ("cg_ms", "CG ms"),
        ("line_search_ms", "line search ms"),
        ("policy_step_ms", "whole policy step ms"),
    ]
    publish(args, "trpo_step", data, rows, columns)


if __name__ == "__main__":
    main()
