"""The learned second-stage ranker: point-in-time features of a candidate pool
(``features``), labels from the window after the cutoff (``labels``), and a gradient-boosted
ranker trained and scored in Spark with XGBoost (``model``). docs/ranker.md."""
