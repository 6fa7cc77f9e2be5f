"""The online API (``shoprec serve``): the newest gold snapshot in memory, answered over HTTP
with the request's context and the user's session (docs/serving.md)."""
