"""Grid tasks' products named by the grid's values, not by their position in the grid.

Ploomber (0.23) appends a task's index in its grid to every product of a grid task:
`models/[[candidate.name]].pkl` becomes `models/rf-2.pkl`. Removing the candidate before it
renames the file (`rf-1.pkl`), so the build trains it again and leaves the old file behind.
Where a product's path uses the grid's `[[...]]` placeholders the name is already unique, so
here it is rendered from them alone; a product without placeholders keeps Ploomber's index.
Two tasks that would share a product are still refused by Ploomber's duplicate check.

Installed by the executor's factory, which Ploomber calls before it makes the tasks; nothing in
site-packages is changed (docs/ploomber-upstream.md, finding 6).
"""

from __future__ import annotations

from pathlib import Path


def name_products_by_value() -> None:
    """From now on in this process, grid products with placeholders carry no index."""
    from ploomber.tasks import taskgroup

    original = taskgroup._init_product_with_str
    if getattr(original, "by_value", False):
        return

    def by_value(product_class, product_primitive, index, resolve_relative_to, params):
        if index is None or "[[" not in str(product_primitive):
            return original(product_class, product_primitive, index, resolve_relative_to, params)
        from jinja2 import StrictUndefined, Template

        path = Path(product_primitive)
        if resolve_relative_to is not None:
            path = Path(resolve_relative_to, product_primitive).resolve()
        template = Template(str(path), variable_start_string="[[", variable_end_string="]]",
                            undefined=StrictUndefined)  # fmt: skip
        return product_class(template.render(**params))

    by_value.by_value = True
    taskgroup._init_product_with_str = by_value
