"""tunesched's entry points: every command of `tunesched` (the daemon, the runner, the client
verbs, the tools), thin over the libraries. `cli.main` is the group; nothing imports this
package but the console script and `python -m cli`."""
