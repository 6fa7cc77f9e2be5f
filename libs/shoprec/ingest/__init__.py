"""Ingestion: source adapters, validation and quarantine, silver tables, synthetic data."""
