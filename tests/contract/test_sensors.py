"""Sensors: what an engine reports goes nowhere by default, and to every sensor of a fan-out."""

from __future__ import annotations

from stream.contract.sensors import DensitySensor, FeedbackSensor, TrainingSensor, fan_out


class Recorder(TrainingSensor):
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def on_status(self, function: str, status: str) -> None:
        self.calls.append(("on_status", (function, status)))

    def on_in_flight(self, count: int) -> None:
        self.calls.append(("on_in_flight", (count,)))


def test_the_default_sensors_accept_every_report_and_do_nothing() -> None:
    for sensor, calls in (
        (DensitySensor(), [("on_indexed", ("f", 3, 0.1, 0, 0)), ("on_index", ("f", [1.0, 2.0])), ("on_released", ("f",))]),
        (FeedbackSensor(), [("on_pair", ("f",)), ("on_refused", ("f", "worse_pairs")), ("on_synthesis_seconds", (0.2,))]),
        (TrainingSensor(), [("on_function", ("f",)), ("on_loss", ("f", "train", 1.5)), ("on_in_flight", (2,))]),
    ):
        for name, args in calls:
            assert getattr(sensor, name)(*args) is None


def test_a_fan_out_reports_every_call_to_each_sensor_in_order() -> None:
    a, b = Recorder(), Recorder()
    both = fan_out(a, b)
    both.on_status("f", "queued")
    both.on_in_flight(1)
    both.on_loss("f", "train", 0.5)  # a method the recorders inherit as no-ops
    assert a.calls == b.calls == [("on_status", ("f", "queued")), ("on_in_flight", (1,))]
    assert fan_out(a) is a
