"""
C{python -m gostrelay}: the console script.
"""

from gostrelay.cli import main

main()
