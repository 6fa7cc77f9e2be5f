"""``shoprec features``: gold user, item and context features and the implicit confidence.

Every function here reads only ``split.history(...)`` of the interactions (events
strictly before ``as_of``) plus static item content (description, category), so no
feature can carry information from the evaluation window.
"""
