"""The contract every floor shares, and the only part of ``stream`` the engines may import.

Typed events (:mod:`.events`), topic names (:mod:`.topics`), the configuration
(:mod:`.config`), dead-letter reasons and strict decoding (:mod:`.deadletter`), the
processor protocol with its outputs and background services (:mod:`.processing`),
the sensors engines report their figures to (:mod:`.sensors`), secret redaction
(:mod:`.logs`) and prompt hooks as data with their one applier (:mod:`.hooks`).

It imports nothing else of vector-trainer's and no Kafka, Prometheus or numeric
library, so the hook client an LLM service embeds stays light.
"""
