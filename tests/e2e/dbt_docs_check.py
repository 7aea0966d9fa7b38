"""Which marts or mart columns lack a description in a generated dbt docs site."""

from __future__ import annotations

import json
import re
from pathlib import Path


def undocumented(docs_dir: Path) -> list[str]:
    """``model`` or ``model.column`` names under ``models/marts/`` with an empty description.

    Columns come from ``catalog.json`` (what the warehouse really holds), descriptions from
    ``manifest.json`` (the yml files), so a column missing from the yml is reported too. A
    family of generated columns (one per catalogue category) counts as described when the
    model's description names it as ``prefix_<placeholder>``, e.g. ``share_<category>``.
    """
    manifest = json.loads((docs_dir / "manifest.json").read_text())
    catalog = json.loads((docs_dir / "catalog.json").read_text())
    missing = []
    for unique_id, node in manifest["nodes"].items():
        if node["resource_type"] != "model" or not node["original_file_path"].startswith(
            "models/marts/"
        ):
            continue
        if not node.get("description", "").strip():
            missing.append(node["name"])
        described = {
            name.lower() for name, column in node["columns"].items()
            if column.get("description", "").strip()
        }
        families = [
            re.compile(re.escape(prefix) + r".+")
            for prefix in re.findall(r"\b([a-z0-9_]+_)<[a-z_]+>", node.get("description", ""))
        ]
        columns = catalog["nodes"].get(unique_id, {}).get("columns", {})
        missing += [
            f"{node['name']}.{name}"
            for name in columns
            if name.lower() not in described and not any(f.fullmatch(name) for f in families)
        ]
    return sorted(missing)
