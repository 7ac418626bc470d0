"""The engines of vector-trainer as stream processors: pure logic, no Kafka calls.

Each processor implements :class:`stream.processing.Processor` and is tested with
plain function calls; :mod:`stream.runtime` runs them against a broker.
"""
