"""tunesched runner."""
