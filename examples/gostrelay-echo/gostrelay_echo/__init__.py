"""
An example gostrelay plugin package (see gostrelay's docs/plugins.md):

  - handler C{echo}: sends every byte back (C{-L echo://:9999});
  - dialer C{srctcp}: TCP to a chain node from a chosen source address
    (C{-F relay+srctcp://server:8420?source=127.0.0.2}).
"""
