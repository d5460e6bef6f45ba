"""Graph passes: one per file, registered in the explicit PASSES dict."""
