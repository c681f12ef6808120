"""Request and response bodies, one module per resource: ``ask`` (questions, answers, search), ``documents``,
``feedback``; ``common`` holds the limits (they live here, at the edge; the library trusts what passes them), the
strict base model and the error and health bodies."""
