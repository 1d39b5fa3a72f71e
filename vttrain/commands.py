"""The pipeline's commands: `vt` command name -> "module:function", in `vt --help` order. vt.cli registers these
(plus `vt demo`, which runs them: vttrain.demo); each module keeps torch inside its functions, so registering
them all stays quick."""
from __future__ import annotations

import importlib

COMMANDS = {
    "build-data": "vtdata.build:build_data_command",
    "export": "vtdata.export:export_command",
    "judge": "vtdata.judge.cli:judge_command",
    "init-model": "vttrain.models.init_model:init_model_command",
    "score-judge": "vttrain.score:score_judge_command",
    "curate": "vtdata.curate:curate_command",
    "train": "vttrain.grpo.train:train_command",
    "eval": "vttrain.eval:eval_command",
    "compare": "vttrain.report.summary:compare_command",
    "report": "vttrain.report.report:report_command",
    "sql": "vtdata.sql:sql_command",
}


def load(name: str):
    """The function of command `name` (ModuleNotFoundError where its stage is not installed)."""
    module, func = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), func)
