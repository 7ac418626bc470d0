"""Engine 3: fine-tuning trigger, datasets, cost guard and trainers (MISSION.md, "Engine 3").

The seed's public names are kept: :class:`BaseTrainer` (the strategy) and
:class:`OpenAITrainer`; :class:`LocalTrainer` adds local LoRA fine-tuning.
"""

from .processor import TrainingProcessor
from .trainers import (
    BaseTrainer,
    JobSpec,
    LocalTrainer,
    OpenAITrainer,
    TrainerError,
    build_trainer,
)

__all__ = ["BaseTrainer", "JobSpec", "LocalTrainer", "OpenAITrainer", "TrainerError", "TrainingProcessor", "build_trainer"]
