"""The DAG's steps, one module per stage (``marketing.pipeline`` re-exports their entry points).

Each step reads its inputs, calls the domain code and writes its outputs: it takes the run
date D (``as_of_date``) and ``Settings``, opens the warehouse for as short as it can, and
returns a small JSON-able dict (the DAG's XCom). Every write replaces exactly D's partition,
so any step can be re-run.
"""
