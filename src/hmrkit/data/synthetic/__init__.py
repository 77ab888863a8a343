"""hmrkit's synthetic data engine over the open Anny-24 body."""
