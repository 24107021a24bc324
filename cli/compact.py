"""`rag compact`: merge the index's segments and drop deleted vectors (also converts an index
written by an earlier release to the segmented format)."""

from __future__ import annotations

import time

from cli.console import console, fail, out, run, settings
from cli.options import CollectionOpt, ConfigOpt, IndexOpt, JsonOpt


def compact(
    index: IndexOpt = None,
    config: ConfigOpt = None,
    collection: CollectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Merge all segments of the index into one and drop the vectors of deleted chunks.

    Every commit writes a small segment; commits merge small ones on their own
    (index.merge_segments), but only compaction builds one large segment with the configured ANN
    kind (index.ann) and reclaims the space of deleted and replaced documents. Safe to run while
    the server answers (readers keep their version) and safe to interrupt; one writer at a time.
    An index written by an earlier release (a full copy per version) is converted in place.
    """
    from rag.components import build_store
    from rag.protocols import Compactable

    cfg = settings(config, collection, index_dir=index)
    started = time.perf_counter()
    writer = run(lambda: build_store(cfg).writer())
    with writer:
        if not isinstance(writer, Compactable):
            fail(f"index.store={cfg.index.store!r} has no compaction")
        before = run(lambda: writer.commit()) if writer.changed else None  # a converted index
        manifest = run(writer.compact)
    seconds = time.perf_counter() - started
    if as_json:
        out.print_json(manifest.model_dump_json())
        return
    kinds = ", ".join(f"{s.kind} ({s.vectors} vectors)" for s in manifest.segments) or "no vectors"
    converted = " (converted from the earlier format)" if before is not None else ""
    console.print(
        f"compacted {cfg.index_dir} into version {manifest.version}{converted}: {kinds}, "
        f"{manifest.chunks} chunks, in {seconds:.1f} s"
    )
