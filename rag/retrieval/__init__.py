"""Retrieval: which chunks answer a query.

* ``dense.py``  — embed the query, top-k by cosine (registry name ``dense``).
* ``hybrid.py`` — dense, keyword (BM25) or both fused, per request (``hybrid``, the default).
* ``fusion.py`` — how two ranked lists become one (convex on normalised scores, or RRF).
* ``diversity.py`` — near-duplicate chunks do not fill the top-k.
* ``rerank.py`` — an optional re-scoring stage (registry kind ``reranker``), off by default.
"""

MODES = ("dense", "keyword", "hybrid")
