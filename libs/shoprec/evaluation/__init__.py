"""Evaluation: ranking metrics in Spark, ground truth of the temporal split, the evaluate job.

See ``../shared/docs/EVALUATION.md`` for what is measured and why.
"""
