"""Experiments that compare greenwire with threads, gevent and eventlet on real programs.

``python -m greenwire.bench xmlrpc`` runs the origin experiment (see
docs/xmlrpc-experiment.md). This package imports nothing at import time: its server
scripts run by path so that gevent's and eventlet's servers never import greenwire.
"""
