"""shoprec: distributed recommendations for e-commerce.

The package is split by concern: ``config`` (typed YAML config), ``spark`` (the one
session factory), ``tables`` (the Delta layer), ``tracking`` (MLflow), ``ingest``
(source adapters, validation, silver tables, synthetic data) and ``cli``.
"""

__version__ = "0.1.0"
