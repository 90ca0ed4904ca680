"""Topologies as frozen data (presets and the inline form), and the one adapter that turns a
description into a running Mininet network (`topologies.mininet_net`, needs root)."""
