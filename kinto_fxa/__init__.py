"""Firefox Accounts authentication for Kinto."""
