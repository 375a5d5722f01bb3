"""The commit protocol behind :class:`~documee_remote.PersistenceManager`, one concern a module.

Private: the manager is the API. Layered bottom-up, each module using only the
ones listed before it (tests/test_architecture.py checks there is no cycle):

- ``context``: :class:`Engine`, what every step needs (the store, the policies,
  the watermarks seen), and the small helpers over it;
- ``reads``: ``analysis.json`` and the journal read, pending deltas folded in;
- ``journal_io``: creating deltas, writing markers, pruning;
- ``hashes``: the ``file_hashes.json`` index, always changed by compare-and-swap;
- ``commit``: :class:`Transaction` and the compare-and-swap commit of
  ``analysis.json``; work after a commit comes in as a hook, not a call upward;
- ``publish``: that work (hashes, removed objects, marker, pruning), and the
  commit with it hooked in;
- ``compact``: compaction, group commit and one-shot updates;
- ``append``: a merge recorded as a delta, then compacted as the policy says;
- ``merging``: merges that commit directly (a graph function, a fencing
  token), and the checks every merge passes;
- ``save``: upstream's whole-codebase save, and delete, beside the journal.

The retry loop under every compare-and-swap is :func:`documee_remote.retry.cas_loop`.
"""
