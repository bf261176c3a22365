"""
Configuration: GOST's command-line URLs and files, one model, printed back by C{-O}.
"""
