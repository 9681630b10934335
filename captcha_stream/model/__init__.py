"""The networks, and nothing else: the CRNN, the codec and CTC loss, the denoiser, the glyph classifier."""
