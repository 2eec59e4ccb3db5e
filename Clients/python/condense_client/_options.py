"""Python names for the protocol's enums and options, shared by embedding and fine-tuning calls."""
from __future__ import annotations

from typing import Optional

from condense.v1 import common_pb2 as common

POOLING = {"mean": common.POOLING_MEAN, "last": common.POOLING_LAST, "eos": common.POOLING_EOS,
           "weighted-mean": common.POOLING_WEIGHTED_MEAN}
POOLING_NAMES = {value: name for name, value in POOLING.items()}
PRECISION = {"float32": common.PRECISION_FLOAT32, "float16": common.PRECISION_FLOAT16,
             "int8": common.PRECISION_INT8, "binary": common.PRECISION_BINARY}
TRUNCATION = {"truncate": common.TRUNCATION_POLICY_TRUNCATE, "reject": common.TRUNCATION_POLICY_REJECT}


def choice(table: dict, name: str, what: str) -> int:
    """The enum value `table` gives `name`; a ValueError listing the choices otherwise."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(map(repr, table))}") from None


def set_prompt(message, prompt: Optional[str]) -> None:
    """Sets the `prompt` oneof of EmbedOptions or Hyperparameters: a template when it holds `{text}`, else a name."""
    if prompt is None:
        return
    if "{text}" in prompt:
        message.prompt_template = prompt
    else:
        message.prompt_name = prompt


def embed_options(prompt: Optional[str] = None, pooling: Optional[str] = None, normalize: Optional[bool] = None,
                  dimensions: int = 0, precision: str = "float32", max_tokens: int = 0,
                  truncation: str = "truncate", exclude_prompt: bool = False,
                  adapter: Optional[str] = None) -> common.EmbedOptions:
    options = common.EmbedOptions(dimensions=dimensions, max_tokens=max_tokens, exclude_prompt=exclude_prompt,
                                  precision=choice(PRECISION, precision, "precision"),
                                  truncation=choice(TRUNCATION, truncation, "truncation"),
                                  adapter_id=adapter or "")
    set_prompt(options, prompt)
    if pooling is not None:
        options.pooling = choice(POOLING, pooling, "pooling")
    if normalize is not None:
        options.normalize = normalize
    return options
