"""Conda channels, the third kind of artifact: repodata fetched and the closure solved with py-rattler
(the library behind pixi), packages streamed through the one verifying reader, and the target
channel written with upstream's own records (hot-fix patches kept). See docs/conda.md."""
