"""GRPO training (`vt train`): VisionThink's RL on TRL, extended through TRL's hooks.

- `config`: `VtTrainConfig` (TRL's GRPOConfig plus vt's fields), its checks, the config file and model card;
- `env`: TRL's side of the agent protocol (vtdata.protocol): the tool environments, the response parser, the
  dataset transform;
- `reward` (accuracy + format - penalty, Eq. 4-5), `refill` (dynamic sampling's refill rows), `fastgen` (sampling
  with one prefill per group and later turns on the last turn's cache), `fastlogps` (the log-prob forwards in
  length buckets with shared prompt prefixes), `metrics_log`, `trainer` (`VtGRPOTrainer`), `memory`
  (`--dry-run`), `scripted` (a scripted sampler for tests and benches); `train`: the command.
May import: vtdata, vttrain.models and vttrain.rollout.
"""
