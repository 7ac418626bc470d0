"""Fine-tuning backends behind one strategy interface (:class:`BaseTrainer`)."""

from __future__ import annotations

from collections.abc import Mapping

from stream.contract.config import ConfigError, TrainingSettings

from .base import BaseTrainer, JobSpec, TrainerError
from .local_trainer import LocalTrainer
from .openai_trainer import OpenAITrainer, api_key_from_env

__all__ = ["BaseTrainer", "JobSpec", "LocalTrainer", "OpenAITrainer", "TrainerError", "build_trainer"]


def build_trainer(cfg: TrainingSettings, environ: Mapping[str, str] | None = None) -> BaseTrainer | None:
    """The configured trainer, or None for ``trainer=none`` (datasets are exported, nothing is trained)."""
    if cfg.trainer == "none":
        return None
    if cfg.trainer == "openai":
        key = api_key_from_env(environ)
        if not key:
            raise ConfigError("training.trainer=openai needs an API key in VT_TRAINING_API_KEY or OPENAI_API_KEY")
        return OpenAITrainer(api_key=key, base_url=cfg.openai_base_url, timeout_s=cfg.openai_timeout_s, suffix=cfg.suffix)
    assert cfg.local_model_path is not None  # validated by TrainingSettings
    return LocalTrainer(
        model_path=cfg.local_model_path,
        lora_r=cfg.local_lora_r,
        learning_rate=cfg.local_learning_rate,
        max_length=cfg.local_max_length,
    )
