"""python -m cli: the `tunesched` command line."""

from cli.main import main

if __name__ == "__main__":  # stage processes re-import the main module: do not run the CLI
    main()
