"""The agent protocol, in one place: what the model is shown and what its turns may say (paper §3.3, Table 4).

A rollout is at most `max_turns` assistant turns:
1. system = the agent prompt (it declares the `resize_image` function inside `<tools>`), user = the instruction,
   the LOW-res image, the question (`agent_messages`).
2. If the reply holds a valid `<tool_call>{"name": "resize_image", "arguments": {"action": "resize"}}</tool_call>`
   the environment answers with a turn carrying the HIGH-res image and the continuation instruction
   (`tool_turn(image=high)`); an invalid call gets the error turn (`tool_turn(error=...)`), and the model answers
   again. With `max_turns` > 2 the exchange repeats.

Its modules, each importing only the ones above it:
- `messages`: the chat template, the messages of each turn, the resize call and its parser;
- `tools`: the tools (`resize_image`, vt's `zoom_image`), their declarations and `respond`, which answers a call;
- `turns`: turn 1's messages for a selection of tools and the per-turn format rule of the reward.
TRL's side (the environments, the response parser bound on the tokenizer) is vttrain/grpo/env.py; eval's is
vttrain/rollout/engine.py. This package re-exports the names the stages use (`protocol.agent_messages`). No torch.
"""
from vtdata.protocol import tools  # noqa: F401
from vtdata.protocol.messages import (CALL_EXAMPLE, CHAT_TEMPLATE, CHAT_TEMPLATES, TOOL_ACTION,  # noqa: F401
                                      TOOL_CALL_PARSERS, TOOL_ERROR_TEXT, TOOL_NAME, TOOL_OK_HEAD, TOOL_OK_TAIL,
                                      TURN2_BYTES, ToolCall, chat_template, direct_messages, parse_payload,
                                      parse_tool_call, parse_tool_call_release, prompts, tool_content, tool_turn,
                                      user_text)
from vtdata.protocol.turns import (FORMAT_RULES, agent_messages, check_format, check_turn,  # noqa: F401
                                   check_turn_release)
