"""The engines of vector-trainer as stream processors: pure logic, no Kafka calls.

Each processor implements :class:`stream.contract.processing.Processor` and is tested
with plain function calls; :mod:`stream.runtime` runs them against a broker.  The
engines import only :mod:`stream.contract` of the stream side (and their own
libraries): figures go to the sensor they are built with, and what they need from
Kafka reaches them through the contract (a service's context) or their caller.
"""
