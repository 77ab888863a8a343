"""Data: the Sample schema, the synthetic engine, readers, crops and augmentation."""
