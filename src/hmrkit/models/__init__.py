"""Models: backbones (timm), reusable heads, and one module per method."""
