"""The evaluation bench: three ways to tune the same jobs, their fidelity, and the report."""
