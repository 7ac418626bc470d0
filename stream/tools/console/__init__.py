"""``vector-trainer console``: a web console and a versioned JSON API over the loop's topics.

* :mod:`.state` follows the output topics (golden, hooks, training, models, dlq) from
  their beginning and the processors' ``/metrics``, and keeps what the pages show;
* :mod:`.app` is the FastAPI application: the JSON API under ``/api/v1`` (described
  at ``/openapi.json``) and the pages, which use that API themselves;
* :mod:`.replay` selects dead letters and sends their values back to their source
  topic (also ``vector-trainer dlq replay``);
* :mod:`.densitymap` projects a function's indexed vectors to 2-D (the projection
  ``vector-trainer plot`` draws) from the processor's density checkpoints.

Nothing from a topic is rendered as markup: templates autoescape and the pages' script
writes topic text with ``textContent`` only.  State-changing calls need the bearer
token of ``VT_CONSOLE_TOKEN`` in an ``Authorization`` header; without it the console is
read-only.
"""
