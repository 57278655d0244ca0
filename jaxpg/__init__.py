"""jaxpg: JAX-accelerated, vectorized policy-gradient RL on gymnax environments.

    import jax, jaxpg
    config = jaxpg.PPOConfig(env="CartPole-v1", total_timesteps=500_000)
    train = jaxpg.make_train(config)          # pure: key -> TrainResult
    result = jax.jit(train)(jax.random.key(0))

Names are imported lazily: importing gymnax starts JAX's backend, and
``jax.distributed.initialize`` (``jaxpg train --distributed``) must run before that.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Agent": "jaxpg.agents",
    "make_agent": "jaxpg.agents",
    "Algorithm": "jaxpg.algorithms",
    "Batch": "jaxpg.updates",
    "Targets": "jaxpg.updates",
    "UpdateResult": "jaxpg.updates",
    "make_algorithm": "jaxpg.registry",
    "register_algorithm": "jaxpg.registry",
    "HParams": "jaxpg.config",
    "Config": "jaxpg.config",
    "field": "jaxpg.config",
    "RunOptions": "jaxpg.runner",
    "A2CConfig": "jaxpg.a2c",
    "PPOConfig": "jaxpg.ppo",
    "GRPOConfig": "jaxpg.grpo",
    "TRPOConfig": "jaxpg.trpo",
    "ReinforceConfig": "jaxpg.reinforce",
    "Env": "jaxpg.envs",
    "make_env": "jaxpg.envs",
    "registered_envs": "jaxpg.envs",
    "Policy": "jaxpg.policy",
    "PolicyParams": "jaxpg.policy",
    "make_policy": "jaxpg.policy",
    "TrainResult": "jaxpg.train",
    "TrainState": "jaxpg.train",
    "init_state": "jaxpg.train",
    "make_init": "jaxpg.train",
    "make_train": "jaxpg.train",
    "make_train_chunk": "jaxpg.train",
    "make_update": "jaxpg.train",
    "make_collect": "jaxpg.train",
    "make_learn": "jaxpg.train",
    "Collected": "jaxpg.train",
    "policy_params": "jaxpg.train",
    "CheckpointError": "jaxpg.checkpoint",
    "save_checkpoint": "jaxpg.checkpoint",
    "restore_checkpoint": "jaxpg.checkpoint",
    "EvalResult": "jaxpg.evaluate",
    "make_evaluate": "jaxpg.evaluate",
    "render_gif": "jaxpg.evaluate",
    "evaluate_run": "jaxpg.evaluate",
    "RunEvaluation": "jaxpg.evaluate",
    "grid": "jaxpg.sweep",
    "random_search": "jaxpg.sweep",
    "make_sweep": "jaxpg.sweep",
    "parse_sweep_spec": "jaxpg.sweep",
    "results_table": "jaxpg.sweep",
    "run": "jaxpg.runner",
    "resume": "jaxpg.runner",
    "RunResult": "jaxpg.runner",
    "Callback": "jaxpg.callbacks",
    "Members": "jaxpg.members",
    "final_return": "jaxpg.metrics",
    "make_sharded_train": "jaxpg.distributed",
    "make_sharded_sweep": "jaxpg.distributed",
    "initialize_distributed": "jaxpg.distributed",
}
_SUBMODULES = {
    "advantages",
    "agents",
    "algorithms",
    "ppo",
    "a2c",
    "trpo",
    "reinforce",
    "grpo",
    "registry",
    "trust_region",
    "updates",
    "checkpoint",
    "config",
    "distributions",
    "envs",
    "evaluate",
    "losses",
    "networks",
    "normalization",
    "plotting",
    "policy",
    "presets",
    "rollout",
    "runs",
    "runner",
    "callbacks",
    "members",
    "metrics",
    "files",
    "flags",
    "sweep",
    "train",
    "distributed",
}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name):
    if name in _EXPORTS:
        attr = {"register_algorithm": "register"}.get(name, name)
        value = getattr(importlib.import_module(_EXPORTS[name]), attr)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"jaxpg.{name}")
    else:
        raise AttributeError(f"module 'jaxpg' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
