"""tunesched's command-line client (`tunesched ...`)."""
