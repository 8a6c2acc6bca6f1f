"""tunesched proto."""
