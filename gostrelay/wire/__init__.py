"""
Sans-IO wire formats: feed bytes, get values; encode values to bytes.  No
transports, no reactor, no Deferreds.
"""
