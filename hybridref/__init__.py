"""hybridref: attention / state-space hybrid sequence models in hand-written C, driven from Python."""
__version__ = "0.1.0"
