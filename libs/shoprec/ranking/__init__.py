"""Batch recommendations: candidate sources, deep scoring in Spark, fusion, cold start,
re-ranking and explanations, written to gold.recommendations (``shoprec recommend``)."""
