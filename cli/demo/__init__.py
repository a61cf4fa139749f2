"""The end-to-end demo: `twinstream demo` and its report."""
