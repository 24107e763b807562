"""Built-in providers. Each module is imported only when its provider is used."""
