"""tunesched scheduler: the pure scheduling core (`scheduler.core`), its discrete-event
simulator (`scheduler.sim`), the daemon around the core (`scheduler.service`) and a local
cluster harness for tests, benches and the demo (`scheduler.testing`).

Import-light on purpose: importing this package loads none of them. The core and the simulator
are pure (no gRPC, SQLite, threads or clock); the service and the harness are not.
"""
