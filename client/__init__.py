"""Clients of a running service, over HTTP only (nothing from rag/, api/ or the other packages):
a small typed Python client, and LangChain / LlamaIndex retrievers built on it."""
