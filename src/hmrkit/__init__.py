"""hmrkit."""
