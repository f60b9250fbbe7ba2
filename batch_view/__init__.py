"""The Monthly batch admin view: one web page per month, served beside the Dagster UI."""
