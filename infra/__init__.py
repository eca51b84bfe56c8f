"""The bottom layer, which imports nothing else of the project: user errors (`errors`), atomic files
and run locks (`files`), the command line (`cli`), device policy (`device`), background work and
progress."""
