#!/usr/bin/env python3
"""Strip a botocore service-2.json down to what Wharf's validator needs (no documentation).

Usage: scripts/strip-model.py <botocore service-2.json> > crates/wharf-api/models/<service>.json
The models are the source of truth for the wire; refresh them from a newer botocore with this.
"""
import json
import sys

DROP = {"documentation", "documentationUrl", "examples", "deprecatedMessage", "locationName_doc"}


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k not in DROP}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


model = json.load(open(sys.argv[1]))
model = strip(model)
for op in model["operations"].values():
    op.pop("errors", None)
json.dump(model, sys.stdout, separators=(",", ":"), sort_keys=True)
