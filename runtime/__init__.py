"""The light edge runtime: taxonomy, schema, grammar, prompt and llama.cpp triage."""
