"""The offline designer: a deterministic baseline designer (not an LLM) that plays every role
through the same typed tools an LLM would call. `client` is the ChatCompletionClient; `strategies`
the design heuristic, `repair` the validator-driven fixes, `concepts` the Reader's vocabulary."""
