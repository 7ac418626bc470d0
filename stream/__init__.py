"""vector-trainer's stream side, in floors that only import downwards:

* :mod:`stream.contract` — events, topic names, settings, dead-letter reasons, the
  processor protocol, sensors, hook rules (imported by the engines in ``processors``);
* :mod:`stream.runtime` — the Kafka consumer loop, checkpoints, state, services, metrics;
* :mod:`stream.client`, :mod:`stream.tools`, :mod:`stream.vectorwave_bridge` — the hook
  client services embed, the tools around a running pipeline, the VectorWave bridge;
* :mod:`stream.pipeline` — the engines and the runtime assembled (what ``run`` starts);
* :mod:`stream.cli` — the command line.

``pyproject.toml`` states these floors as import-linter contracts (``lint-imports``).
"""
