"""The runtime hook client an LLM service embeds (:mod:`.hook_client`).

It depends on the contract and aiokafka only: importing it loads no engine,
no Prometheus client and no numeric library.
"""
