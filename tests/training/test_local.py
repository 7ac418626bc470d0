"""LocalTrainer: real LoRA fine-tuning of a tiny causal LM built here from a config (no download).

Needs the ``models`` extra (torch's CPU build, transformers, peft): ``make test-models``
installs it and runs these (CI does); elsewhere they skip with that reason.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from processors.training.trainers.local_trainer import missing_extra

pytestmark = [
    pytest.mark.models,
    pytest.mark.skipif(
        bool(missing_extra()) and os.environ.get("VT_REQUIRE_MODELS") != "1",
        reason=f"the 'models' extra is not installed (missing: {', '.join(missing_extra())}): make test-models",
    ),
]

from processors.training import LocalTrainer, TrainingProcessor  # noqa: E402
from processors.training.dataset import split, write_dataset  # noqa: E402
from processors.training.trainers import JobSpec  # noqa: E402
from stream.contract import events  # noqa: E402
from stream.contract.config import TrainingSettings  # noqa: E402
from tests.support.training import golden  # noqa: E402


def tiny_model(directory: Path, texts: list[str]) -> Path:
    """A 2-layer Llama with a word-level tokenizer fitted on ``texts``, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, bos_token_id=fast.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def corpus(fn: str, n: int) -> list:
    return [golden(fn, i) for i in range(n)]


def texts_of(samples) -> list[str]:
    return [m.content + " <|system|> <|user|> <|assistant|>" for s in samples for m in s.messages]


async def test_lora_training_reports_each_step_and_saves_the_adapter(tmp_path) -> None:
    samples = corpus("local_fn", 24)
    model_dir = tiny_model(tmp_path / "tiny", texts_of(samples))
    from processors.training.dataset import Sample

    plain = [Sample(uuid=s.uuid, selected_at=s.selected_at, messages=tuple((m.role, m.content) for m in s.messages)) for s in samples]
    train, valid = split(plain, 0.2)
    ds = write_dataset(root=tmp_path / "data", job_id="local-1", function_name="local_fn", train=train, valid=valid)
    trainer = LocalTrainer(model_path=model_dir, lora_r=4, learning_rate=5e-3, max_length=64, batch_size=4)
    spec = JobSpec("local-1", "local_fn", str(model_dir), 3, ds.train_path, ds.valid_path, ds.n_train, ds.n_val)
    pid = await trainer.start(spec, await trainer.prepare(spec))
    for _ in range(600):
        update = await trainer.poll(pid)
        if update.status in ("succeeded", "failed", "cancelled"):
            break
        await asyncio.sleep(0.1)
    assert update.status == "succeeded", update.error
    steps = await trainer.metrics(pid, None)
    per_epoch = -(-ds.n_train // 4)
    assert [s.step for s in steps] == list(range(1, 3 * per_epoch + 1))
    assert all(s.train_loss is not None and s.train_loss > 0 for s in steps)
    assert [s.step for s in steps if s.valid_loss is not None] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    # It learned something: the last epoch's mean loss is below the first's.
    first = sum(s.train_loss for s in steps[:per_epoch]) / per_epoch
    last = sum(s.train_loss for s in steps[-per_epoch:]) / per_epoch
    assert last < first
    adapter = Path(update.fine_tuned_model)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    assert (await trainer.poll("local-unknown")).status == "failed"  # after a restart: said, not pretended
    await trainer.aclose()


@pytest.mark.broker
async def test_local_job_through_the_runtime(make_settings, topics, tmp_path) -> None:
    from tests.support.runtime import running, wait_for
    from tests.support.training import golden_items, produce, topic_events

    samples = corpus("local_fn", 14)
    model_dir = tiny_model(tmp_path / "tiny", texts_of(samples))
    settings = make_settings(training=TrainingSettings(
        trainer="local", local_model_path=model_dir, threshold=12, epochs=2, local_lora_r=4, local_max_length=64,
        poll_initial_s=0.05, poll_max_s=0.1,
    ))
    await produce(settings, golden_items("local_fn", range(14)))
    proc = TrainingProcessor(settings)
    async with running(settings, [proc]):
        await wait_for(lambda: bool(proc.jobs_of("local_fn")) and proc.jobs_of("local_fn")[-1].final, timeout=120, what="the local job")
    training = await topic_events(settings, "training")
    (model,) = await topic_events(settings, "models")
    statuses = [e.status for e in training]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded", [(e.status, e.error) for e in training]
    steps = [e.metrics.step for e in training if e.status == "running" and e.metrics]
    assert steps and steps == sorted(set(steps))
    assert training[0].est_cost_usd == 0 and training[0].est_tokens > 0  # local compute is not billed
    assert Path(model.model, "adapter_model.safetensors").is_file() and model.trained_on == training[0].n_train
    assert isinstance(events.decode("training", events.encode(training[-1])), events.TrainingEvent)
