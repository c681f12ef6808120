"""The evaluation harness: metrics, gold-set loaders and the HTTP runner behind ``rag eval``."""
