"""The scheduler daemon: gRPC servicers over the pure core, with state in SQLite.

    store.py      SQLite (WAL): event log, core snapshots, jobs, lease timeline, idempotency keys
    blobs.py      files per job on disk: uploaded model, latest state bundle, results
    records.py    JobRecord: what clients see of a job; submission validation
    daemon.py     Daemon: one lock around core + store; runner links; watchers; the clock
    servicers.py  thin gRPC servicers: protobuf <-> Daemon calls
    server.py     create_server(...) -> (server, port); serve()
    errors.py     service errors and their gRPC status codes
"""
