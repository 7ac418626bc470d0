"""What the engines report, and to whom: sensors, after Faust's ``faust.sensors``.

An engine never imports a metrics library.  It is handed a sensor when it is built
and calls the sensor's ``on_…`` methods as things happen.  The classes here are both
the interface and the default: every method does nothing, so an engine built without
a sensor (a unit test, ``vector-trainer extract``) reports to no one.  The runtime
builds engines with sensors that turn the calls into Prometheus metrics
(:mod:`stream.runtime.sensors`); :func:`fan_out` hands every call to several sensors.

Function names are passed as they come from producers: keeping the number of label
values bounded is the receiver's job.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .events import HookRelease

S = TypeVar("S")

# Why validation refused a candidate hook: a closed vocabulary (a metric label).
WORSE_PAIRS = "worse_pairs"
HELDOUT_DROP = "heldout_drop"
NO_PAIRS = "no_pairs"
HOOK_REFUSALS = (WORSE_PAIRS, HELDOUT_DROP, NO_PAIRS)


class DensitySensor:
    """Engine 1 (``processors.density``): the index and the golden set of each function."""

    def on_skipped(self, function: str, reason: str) -> None:
        """A valid log was not indexed: ``cache_hit`` (the original call was) or ``duplicate`` (uuid known)."""

    def on_indexed(self, function: str, count: int, seconds: float, cap_hits: int, brute_force_queries: int) -> None:
        """A batch of ``count`` logs was indexed in ``seconds``; range queries truncated at ``max_k``, and
        range queries answered by brute force."""

    def on_evicted(self, function: str, reason: str, count: int) -> None:
        """``count`` logs left the index: ``ttl`` or ``cap``."""

    def on_golden_change(self, function: str, strategy: str, change: str) -> None:
        """A sample ``enter``-ed or ``leave``-s the golden set."""

    def on_golden_set(self, function: str, counts: Mapping[str, int]) -> None:
        """The golden set's size by strategy, after an evaluation."""

    def on_index(self, function: str, densities: Collection[float]) -> None:
        """The densities of every log in the function's index now (its size is their number)."""

    def on_selection(self, function: str, seconds: float) -> None:
        """One evaluation (evictions and re-selection) of the function took ``seconds``."""

    def on_evaluation_wait(self, function: str, seconds: float) -> None:
        """At an evaluation: how long the function's oldest indexed log had waited for it (wall clock)."""

    def on_waiting(self, waiting: Mapping[str, float]) -> None:
        """{function: seconds its oldest indexed-but-not-evaluated log has waited} (0: all evaluated)."""

    def on_released(self, function: str) -> None:
        """The function's partition moved to another instance: its current figures are not ours any more."""


class FeedbackSensor:
    """Engine 2 (``processors.feedback``): feedback pairs, syntheses and hook releases."""

    def on_pair(self, function: str) -> None:
        """A feedback pair was accepted for synthesis."""

    def on_synthesis(self, function: str) -> None:
        """A (debounced) synthesis of the function's rules started."""

    def on_synthesis_error(self, function: str) -> None:
        """A synthesis raised (it is logged and retried on the next new pair)."""

    def on_synthesis_seconds(self, seconds: float) -> None:
        """Time to synthesise and validate one function's rules (whatever the outcome)."""

    def on_llm_proposals(self, function: str, count: int) -> None:
        """The LLM proposer offered ``count`` rules."""

    def on_refused(self, function: str, reason: str) -> None:
        """Validation refused a candidate, for one of :data:`HOOK_REFUSALS`."""

    def on_release(self, function: str) -> None:
        """This instance published a release."""

    def on_current(self, release: HookRelease) -> None:
        """``release`` is now the newest trusted release of its function (own or read from the topic)."""


class TrainingSensor:
    """Engine 3 (``processors.training``): the trigger's inputs, cost estimates and jobs."""

    def on_function(self, function: str) -> None:
        """The function is known (it has golden samples): its figures may start, at 0."""

    def on_estimate(self, function: str, cost_usd: float, tokens: int) -> None:
        """The cost guard's figures of the function's latest decision."""

    def on_spend(self, function: str, cost_usd: float) -> None:
        """A job estimated at ``cost_usd`` was sent to a billed trainer."""

    def on_status(self, function: str, status: str) -> None:
        """A job changed status, or a decision (``exported``, ``rejected_budget``) was made."""

    def on_loss(self, function: str, split: str, value: float) -> None:
        """The trainer reported a ``train`` or ``valid`` loss."""

    def on_model(self, function: str, at: float) -> None:
        """A fine-tuned model of the function appeared at Unix time ``at`` (replays may report older ones)."""

    def on_samples(self, function: str, golden: int, new: int) -> None:
        """The function's golden set size, and how many of its samples are new since its last job."""

    def on_in_flight(self, count: int) -> None:
        """Jobs queued, validating or running on this instance."""


class _FanOut:
    """Forwards every ``on_…`` call to each of its sensors, in order (Faust's ``SensorDelegate``)."""

    def __init__(self, sensors: tuple[Any, ...]) -> None:
        self._sensors = sensors

    def __getattr__(self, name: str) -> Callable[..., None]:
        methods = [getattr(sensor, name) for sensor in self._sensors]

        def call(*args: Any, **kwargs: Any) -> None:
            for method in methods:
                method(*args, **kwargs)

        return call


def fan_out(*sensors: S) -> S:
    """One sensor that reports every call to each of ``sensors`` (all of one kind)."""
    if len(sensors) == 1:
        return sensors[0]
    return _FanOut(sensors)  # type: ignore[return-value]
