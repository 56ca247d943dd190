"""Thin adapters between augpipe and external trainers.

`augpipe.integrations.lightning.AugpipeCallback` drives the magnitude knob
from a Lightning Trainer. Importing this package imports no trainer.
"""
