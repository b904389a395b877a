"""Ingest (读取与校验): each export read, parsed, checked against its contract and made canonical."""
