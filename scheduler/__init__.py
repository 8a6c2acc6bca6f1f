"""tunesched scheduler: the pure scheduling core (`scheduler.core`) and its simulator.

Import-light on purpose: nothing here pulls in gRPC, SQLite or TVM. Import
`scheduler.core` for the state machine and `scheduler.sim` for the simulator.
"""
