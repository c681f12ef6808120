"""The HTTP service: a FastAPI app over ``rag.engine.Engine``."""
